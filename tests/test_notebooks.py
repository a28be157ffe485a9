"""The notebook harness, and every course notebook executed in order on the tiny profile.

The course notebooks share one temporary output root, so each finds the artifacts of the ones before it,
exactly as in ``make course``. They run last (see ``conftest.py``): they are the slowest tests.
"""

from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from rlhf_helpers.config import REPO_ROOT, STAGE_NOTEBOOK, Paths
from rlhf_helpers.notebooks import (
    README_END,
    README_START,
    NotebookFailed,
    NotebookRun,
    course_notebooks,
    execute_notebook,
    timing_table,
    update_readme,
)

NOTEBOOKS = course_notebooks()


def _write(path: Path, *sources: str) -> Path:
    nbformat.write(new_notebook(cells=[new_code_cell(s) for s in sources]), str(path))
    return path


def test_harness_passes_profile_and_reports_failing_cell(tmp_path):
    paths = Paths(root=tmp_path / "out", data_dir=REPO_ROOT / "data")
    ok = _write(tmp_path / "ok.ipynb", "import os\nprint(os.environ['RLHF_PROFILE'], os.environ['RLHF_OUTPUT_DIR'])")
    run = execute_notebook(ok, paths, profile="cpu")
    text = nbformat.read(str(run.executed_copy), 4).cells[0].outputs[0]["text"]
    assert text.split() == ["cpu", str(paths.root)] and run.seconds > 0
    bad = _write(tmp_path / "bad.ipynb", "x = 1", "raise ValueError('broken on purpose')")
    with pytest.raises(NotebookFailed, match=r"bad.ipynb failed(.|\n)*broken on purpose"):
        execute_notebook(bad, paths)
    assert (paths.executed_notebooks / "bad.ipynb").exists()  # partial copy kept for reading the traceback


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
    for stage, name in STAGE_NOTEBOOK.items():
        if name == notebook.name and stage not in ("base", "eval"):
            course_paths.require(stage)


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


def test_update_readme_replaces_only_the_results_section(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{README_START}\nold table\n{README_END}\nafter\n")
    runs = [NotebookRun("00_a.ipynb", 3.2, tmp_path), NotebookRun("01_b.ipynb", 10.0, tmp_path)]
    update_readme("# Results\n## Rewards\n| m | x |\n![plot](../plots/p.png)", timing_table(runs), readme)
    text = readme.read_text()
    assert "\n### Results\n#### Rewards\n" in text  # nested under the README's own section heading
    assert text.startswith("intro\n") and text.endswith("after\n") and "old table" not in text
    assert "](outputs/plots/p.png)" in text and "| **total** | **13** |" in text
