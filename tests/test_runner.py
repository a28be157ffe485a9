"""The notebook runner (`make course`): executes a notebook with the profile in its environment, reports the
failing cell, keeps the executed copy, records wall times and writes the results into the README."""

import tempfile
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from rlhf_helpers import runner
from rlhf_helpers.core.artifacts import REPO_ROOT, Paths, write_text
from rlhf_helpers.runner import (
    README_END,
    README_START,
    NotebookFailed,
    NotebookRun,
    execute_notebook,
    timing_table,
    update_readme,
)


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


def test_update_readme_replaces_only_the_results_section(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{README_START}\nold table\n{README_END}\nafter\n")
    runs = [NotebookRun("00_a.ipynb", 3.2, tmp_path), NotebookRun("01_b.ipynb", 10.0, tmp_path)]
    update_readme("# Results\n## Rewards\n| m | x |\n![plot](../plots/p.png)", timing_table(runs), readme)
    text = readme.read_text()
    assert "\n### Results\n#### Rewards\n" in text  # nested under the README's own section heading
    assert text.startswith("intro\n") and text.endswith("after\n") and "old table" not in text
    assert "](outputs/plots/p.png)" in text and "| **total** | **13** |" in text


def test_course_summary_joins_the_notebooks_summaries_in_course_order(tmp_path):
    paths = Paths(root=tmp_path)
    assert runner.course_summary(paths) == ""
    write_text(paths.result("beyond_ppo.md"), "# Beyond\n")
    assert runner.course_summary(paths) == "# Beyond"
    write_text(paths.result("README.md"), "# Results\n")
    assert runner.course_summary(paths) == "# Results\n\n# Beyond"


def test_an_empty_output_variable_never_overwrites_a_source_notebook(tmp_path, monkeypatch):
    ran = []
    monkeypatch.setattr(runner, "execute_notebook", lambda nb, paths, profile: ran.append(nb))  # no kernel here
    monkeypatch.setenv("RLHF_OUTPUT_DIR", "")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="RLHF_OUTPUT_DIR is set but empty: unset it, or set it to a folder"):
        runner.run_course("tiny")  # an error before any notebook runs (Paths() raises)
    assert ran == [] and list(tmp_path.iterdir()) == []


def test_executed_copies_never_go_over_the_source_notebooks(tmp_path, monkeypatch):
    sources = tmp_path / "notebooks"
    sources.mkdir()
    nb = _write(sources / "ok.ipynb", "print('ran')")
    before = nb.read_text()
    monkeypatch.chdir(sources)
    monkeypatch.setenv("RLHF_OUTPUT_DIR", "..")  # from notebooks/: ../notebooks is the source folder itself
    for paths in (Paths(), Paths(root=tmp_path)):
        with pytest.raises(ValueError, match="executed copies would be written to .*folder of the source notebooks"):
            execute_notebook(nb, paths)
    assert nb.read_text() == before  # never executed, never overwritten
    with pytest.raises(ValueError, match="folder of the source notebooks"):  # the course's own folder too
        runner.check_outputs(Paths(root=REPO_ROOT), [])


def test_an_unusable_output_root_is_an_error_before_any_notebook_runs(tmp_path, monkeypatch):
    ran = []
    monkeypatch.setattr(runner, "execute_notebook", lambda nb, paths, profile: ran.append(nb))  # no kernel here
    (tmp_path / "out").write_text("a file, not a folder")
    with pytest.raises(NotADirectoryError, match="output root .*out is a file, not a folder"):
        runner.run_course("tiny", only=["00"], paths=Paths(root=tmp_path / "out", data_dir=REPO_ROOT / "data"))
    assert ran == [] and (tmp_path / "out").read_text() == "a file, not a folder"
    nb = _write(tmp_path / "ok.ipynb", "print('ran')")
    with pytest.raises(NotADirectoryError, match="not a folder"):
        execute_notebook(nb, Paths(root=tmp_path / "out" / "sub"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.ipynb", "out"]
    locked = tmp_path / "locked"
    locked.mkdir()

    def no_write(*args, **kwargs):  # a read-only folder (chmod alone does not stop root)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", no_write)
    with pytest.raises(PermissionError, match="output root .*locked cannot be written"):
        runner.run_course("tiny", only=["00"], paths=Paths(root=locked, data_dir=REPO_ROOT / "data"))
    assert ran == [] and list(locked.iterdir()) == []
