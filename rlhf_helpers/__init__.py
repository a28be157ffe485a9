"""rlhf_helpers: the tested helper package behind the RLHF course notebooks.

One module per notebook, on top of a shared core (``rlhf_helpers.core``: configuration, artifact paths and
atomic I/O, the chat format, model loading and the one precision decision, the tiny base model, generation and
log-probs, text metrics, the held-out comparison of policies, measuring memory and weights, plotting) that imports
no stage module.

| notebook | its module in `rlhf_helpers/` | its tests in `tests/` |
|---|---|---|
| every notebook's first cell | `notebook_setup.py` (profile, seed, threads, versions) | `test_notebook_setup.py` |
| 00 setup and overview | `overview.py` (the toy objective, the course map) | `test_overview.py` |
| 01 data preparation | `data_prep.py` (formats, validation, splits, the CLI) | `test_data_prep.py` |
| 02 SFT, full | `sft_full.py` | `test_sft_full.py` |
| 03 SFT, QLoRA | `sft_qlora.py` | `test_sft_qlora.py` |
| 04 reward modelling | `reward.py` | `test_reward.py` |
| 05 PPO | `ppo.py` (the algorithm, top to bottom); `ppo_runs.py` (callbacks, checkpoints, β sweep, course loader); `overoptimization.py` (rise and fall, Gao et al.'s fit, the blind spot in numbers) | `test_ppo.py`, `test_ppo_runs.py`, `test_overoptimization.py` |
| 06 evaluation | `evaluation.py` | `test_evaluation.py` |
| 07 beyond PPO | `beyond_ppo.py` (DPO, IPO, RLOO and GRPO with TRL's trainers, one evaluation, the frontier) | `test_beyond_ppo.py` |
| 08 human feedback | `human_feedback.py` (pairs, label files, the labelling session and widget, the simulated annotator, agreement, labels -> reward model) | `test_human_feedback.py` |
| 09 sentiment control | `sentiment.py` (reviews and prompts, the writer, the classifier, VADER, the LoRA / checkpointing table) | `test_sentiment.py` |
| 10 seq2seq policy | `seq2seq.py` (a T5 through SFT with Seq2SeqTrainer, the course's PPO and the held-out evaluation) | `test_seq2seq.py` |
| `make course` | `runner.py` (executes the notebooks) | `test_runner.py`, `test_notebooks.py` (every notebook, end to end) |
| `make seeds` | `seeds.py` (notebooks 01-05 per seed, the spread of the headline numbers) | `test_seeds.py` |

``judge`` (the gold rubric) and ``course_dataset`` (the generator of ``data/``) serve the course data.
``import rlhf_helpers`` is cheap on purpose: no torch or transformers until a stage module or function needs them.
"""

from .core.artifacts import MissingStageError, Paths
from .core.config import Profile, get_profile

__all__ = ["MissingStageError", "Paths", "Profile", "get_profile"]
__version__ = "0.1.0"
