# The course in two commands:  `make course`  (run every notebook on the tiny profile)  and  `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Installed first and pinned: an unpinned torch pulls several GB of CUDA packages on a CPU machine.
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed
PROFILE ?= tiny

.PHONY: install course stages solutions seeds test lab lint data links clean

# pip writes the bytecode of every installed module up front: where PYTHONDONTWRITEBYTECODE is set (as on this
# project's machines) Python would otherwise compile torch and transformers again in every process (~20 s a kernel).
PIP    := $(BIN)/python -m pip install -q

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) "$(TORCH)"
	$(PIP) -r requirements.txt -r requirements-dev.txt
	$(PIP) --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

## Execute notebooks 00 -> 10 in order on the tiny profile; executed copies and results land in outputs/.
course: $(STAMP)
	RLHF_PROFILE=$(PROFILE) $(BIN)/python -m rlhf_helpers course

## Before a workshop: notebooks 01-05 only, i.e. every stage the later notebooks read (data, base model, SFT, QLoRA,
## reward model, PPO), built in advance (workshop/README.md).
stages: $(STAMP)
	RLHF_PROFILE=$(PROFILE) $(BIN)/python -m rlhf_helpers course --only 01,02,03,04,05

## Every exercise's solution (notebooks/solutions/), after building the stages they read; the executed copies land
## in outputs/notebooks/, what the exercises write in outputs/exercises/ (the course's own outputs stay unchanged).
solutions: $(STAMP)
	RLHF_PROFILE=$(PROFILE) $(BIN)/python -m rlhf_helpers solutions

## Seeds 1 and 2: notebooks 01-05 into outputs/seeds/ (seed 0 is `make course`'s run, made first if missing);
## then outputs/results/seeds.csv and the README's seeds table.
seeds: $(STAMP)
	$(BIN)/python -m rlhf_helpers seeds

## Unit tests, then every notebook executed on the tiny profile.
test: $(STAMP)
	RLHF_PROFILE=tiny $(BIN)/python -m pytest

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

lint: $(STAMP)
	$(BIN)/ruff check rlhf_helpers tests benchmarks notebooks

## After changing rlhf_helpers/colab_links.py's REPO (a fork): rewrite every notebook's install cell and the badges.
links: $(STAMP)
	$(BIN)/python -m rlhf_helpers links

## Regenerate the committed course dataset in data/ (deterministic).
data: $(STAMP)
	$(BIN)/python -m rlhf_helpers.course_dataset --out data --seed 0

clean:
	rm -rf outputs/checkpoints outputs/prepared_data outputs/notebooks outputs/exercises
