"""The workshop kit's solutions (`make solutions` executes them; here only their shape): every exercise of every
course notebook has a tier, a time and a solution that writes to its own folder and ends with a discussion."""

import re
from pathlib import Path

import nbformat
import pytest

from rlhf_helpers.runner import EXERCISE_HEADING, course_notebooks, exercise_ids, solution_notebooks

NOTEBOOKS = course_notebooks()
ITEM = re.compile(r"^(\d+)\. ", re.M)
TAGGED = re.compile(r"^(\d+)\. \*\((warm-up|core|stretch) · ~(\d+) min\)\*", re.M)


def solutions_of(notebook: Path) -> Path:
    return notebook.parent / "solutions" / f"{notebook.stem}_solutions.ipynb"


def exercises_cell(notebook: Path) -> str:
    cells = [c.source for c in nbformat.read(str(notebook), 4).cells
             if c.cell_type == "markdown" and c.source.startswith("## Exercises")]
    assert len(cells) == 1, f"{notebook.name}: expected one '## Exercises' cell"
    return cells[0]


def test_every_course_notebook_has_one_solutions_notebook():
    assert [solutions_of(nb) for nb in NOTEBOOKS] == solution_notebooks()


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_exercise_has_a_tier_a_time_and_a_solution_that_writes_its_own_folder(notebook: Path):
    text = exercises_cell(notebook)
    items = [int(n) for n in ITEM.findall(text)]
    tagged = [(int(n), tier, int(minutes)) for n, tier, minutes in TAGGED.findall(text)]
    assert items == list(range(1, len(items) + 1)) and len(items) >= 3, f"{notebook.name}: exercises {items}"
    assert [t[0] for t in tagged] == items, f"{notebook.name}: an exercise without '*(tier · ~M min)*'"
    solutions = solutions_of(notebook)
    assert f"[solutions/{solutions.name}](solutions/{solutions.name})" in text
    nb = nbformat.read(str(solutions), 4)
    headings = [(int(n), tier, int(m)) for c in nb.cells if c.cell_type == "markdown"
                for n, tier, m in EXERCISE_HEADING.findall(c.source)]
    assert headings == tagged, f"{solutions.name}: its headings do not match the exercises' tiers and times"
    assert exercise_ids(solutions) == [f"{notebook.name[:2]}.{n}" for n in items]
    sections = "\n".join(f"<{c.cell_type}>\n{c.source}" for c in nb.cells).split("\n## Exercise ")[1:]
    for k, section in enumerate(sections, 1):
        assert f'exercise_profile(profile, "{notebook.name[:2]}.{k}")' in section, f"{solutions.name}: exercise {k}"
        assert "<markdown>\n**Discussion.**" in section, f"{solutions.name}: exercise {k} has no discussion"
    assert f"[{notebook.name}](../{notebook.name})" in nb.cells[0].source


def test_the_workshop_agendas_name_only_exercises_that_exist():
    """The guide's agenda tables ("04: 3, 5, 7"; "02: 1; 03: 1 or 5") point at exercises by number."""
    exercises = {nb.name[:2]: {int(n) for n in ITEM.findall(exercises_cell(nb))} for nb in NOTEBOOKS}
    guide = (Path(__file__).parents[1] / "workshop" / "README.md").read_text()
    named = [(nb, int(k)) for row in re.findall(r"^\|.*\|\s*$", guide, re.M)
             for nb, ks in re.findall(r"\b(\d\d): ((?:\d+(?:, | or )?)+)", row.rstrip("|").split("|")[-1])
             for k in re.split(r", | or ", ks.strip())]
    assert len(named) >= 10, f"the agenda tables name {len(named)} exercises: did their format change?"
    missing = [f"{nb}.{k}" for nb, k in named if k not in exercises.get(nb, set())]
    assert not missing, f"workshop/README.md's agendas name exercises that do not exist: {missing}"
