"""Every course notebook executed in order on the tiny profile, and the bars the course run must meet.

The course notebooks share one temporary output root, so each finds the artifacts of the ones before it,
exactly as in ``make course``. They run last (see ``conftest.py``): they are the slowest tests.
"""

from pathlib import Path

import nbformat
import pytest

from rlhf_helpers.core.artifacts import REPO_ROOT, STAGES, Paths
from rlhf_helpers.runner import course_notebooks, execute_notebook

NOTEBOOKS = course_notebooks()


def test_notebooks_are_stored_clean_and_short():
    assert [nb.name[:2] for nb in NOTEBOOKS][:2] == ["00", "01"]
    for path in NOTEBOOKS:
        nb = nbformat.read(str(path), 4)
        nbformat.validate(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{path.name} stored with outputs"
                assert len(cell.source.strip().splitlines()) <= 15, f"{path.name}: code cell over 15 lines"


@pytest.fixture(scope="module")
def course_paths(tmp_path_factory) -> Paths:
    return Paths(root=tmp_path_factory.mktemp("course"), data_dir=REPO_ROOT / "data")


@pytest.mark.notebook
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_course_notebook_executes(notebook: Path, course_paths: Paths):
    run = execute_notebook(notebook, course_paths, profile="tiny")
    executed = nbformat.read(str(run.executed_copy), 4)
    errors = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    # the stage this notebook is responsible for left its artifacts where the next notebook looks
    for stage, spec in STAGES.items():
        if spec.notebook == notebook.name:
            course_paths.finished(stage)


@pytest.mark.notebook
def test_course_ppo_beats_sft_on_heldout_prompts(course_paths: Paths):
    """The bar of the PPO stage on the tiny profile, read from notebook 05's table (it runs after the notebooks):
    PPO gets a higher learned reward than SFT on the held-out prompts and wins >60% of them by the gold judge."""
    import pandas as pd

    table = pd.read_csv(course_paths.result("ppo_vs_sft.csv"), index_col=0)
    sft, ppo = table.loc["SFT (full)"], table.loc["PPO"]
    assert ppo["n"] == sft["n"] == 200
    assert ppo["reward_mean"] > sft["reward_mean"]
    assert ppo["win_rate"] > 0.6 and ppo["win_low"] > 0.5, table[["win_rate", "win_low", "win_high"]]
    assert 0 < ppo["kl"] < 10  # it moved, on a leash
