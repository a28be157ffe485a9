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


def test_timing_table_gives_the_pipelines_subtotal_beside_the_other_notebooks(tmp_path):
    runs = [NotebookRun(f"{i:02d}_n.ipynb", 10.0 + i, tmp_path) for i in range(9)]
    table = timing_table(runs)
    assert "| **00-06, data to evaluation** | **91** |" in table and table.endswith("| **total** | **126** |")
    assert "00-06" not in timing_table(runs[:7]) and "00-06" not in timing_table(runs[1:])  # all of it, or only it


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


def test_build_missing_runs_the_notebooks_of_missing_stages_once_in_course_order(tmp_path, monkeypatch, capsys):
    """The mechanism behind each notebook's ensure_stages cell, on stand-in notebooks that only write their stage's
    done-marker (and say so): notebook 05 needs the reward model, which needs SFT and the data; QLoRA is not run."""
    from rlhf_helpers.core.artifacts import STAGES
    from rlhf_helpers.core.config import get_profile

    folder = tmp_path / "notebooks"
    folder.mkdir()
    for stage, spec in STAGES.items():
        marker = f"paths.prepared_data / {spec.done_marker!r}" if stage == "data" else \
            f"paths.checkpoint({stage!r}) / {spec.done_marker!r}"
        code = ("import os\nfrom rlhf_helpers.core.artifacts import Paths\npaths = Paths()\n"
                f"path = {marker}\npath.parent.mkdir(parents=True, exist_ok=True)\npath.write_text('{{}}')\n"
                f"print('built', {stage!r}, os.environ['RLHF_PROFILE'], os.environ['RLHF_SET'])")
        nb = folder / spec.notebook
        cells = nbformat.read(str(nb), 4).cells if nb.exists() else []
        nbformat.write(new_notebook(cells=[*cells, new_code_cell(code)]), str(nb))  # 01 makes data and base
    monkeypatch.setattr(runner, "NOTEBOOK_DIR", folder)
    monkeypatch.setenv("RLHF_SET", "sft.max_steps=3")  # the kernels inherit the environment's settings
    profile = get_profile("tiny", paths=Paths(root=tmp_path / "out", data_dir=REPO_ROOT / "data"))
    write_text(profile.paths.result(runner.TIMES), "notebook,seconds\r\n01_data_preparation.ipynb,60.0\r\n"
               "02_sft_full.ipynb,90.0\r\n04_reward_modeling.ipynb,90.0\r\n")
    assert runner.missing_stages(profile.paths, ["reward"]) == ["data", "sft_full", "reward"]
    runs = runner.build_missing(profile, ["reward"], progress=False)
    assert [r.notebook for r in runs] == ["01_data_preparation.ipynb", "02_sft_full.ipynb", "04_reward_modeling.ipynb"]
    out = capsys.readouterr().out
    assert "Missing in" in out and "data, sft_full, reward" in out and "01_data_preparation.ipynb (~60 s)" in out
    assert "Estimate: ~4 min" in out
    printed = nbformat.read(str(runs[-1].executed_copy), 4).cells[0].outputs[-1]["text"]
    assert printed.split() == ["built", "reward", "tiny", "sft.max_steps=3"]
    assert runner.missing_stages(profile.paths, ["reward"]) == [] and runner.build_missing(profile, ["reward"]) == []
    assert "Earlier stages found" in capsys.readouterr().out
    colab = get_profile("colab", paths=profile.paths)
    assert runner.measured_seconds(colab) == {} and runner.measured_seconds(profile)["02_sft_full.ipynb"] == 90.0
    (profile.paths.checkpoint("sft_full") / STAGES["sft_full"].done_marker).unlink()  # an unfinished SFT run
    assert [r.notebook for r in runner.build_missing(colab, ["ppo"], progress=False)] == [
        "02_sft_full.ipynb", "05_ppo.ipynb"]  # only what is missing: the finished reward model is kept
    assert "No measured time for the 'colab' profile" in capsys.readouterr().out


def test_the_kernel_gets_absolute_folders_the_install_skip_and_a_clear_error_for_a_dead_kernel(tmp_path, monkeypatch):
    """A relative output root means the same folder to the notebook it runs (whose kernel starts in the notebook's
    folder); the kernel knows it is run by the runner (the Colab install cell skips); a dying kernel is a
    NotebookFailed naming the notebook, with the partial copy kept."""
    monkeypatch.chdir(tmp_path)
    paths = Paths(root=Path("rel-out"), data_dir=Path("rel-data"))
    nb = _write(tmp_path / "env.ipynb", "import os\nprint(os.environ['RLHF_OUTPUT_DIR'], os.environ['RLHF_DATA_DIR'], "
                                        "os.environ['RLHF_RUNNER'])")
    text = nbformat.read(str(execute_notebook(nb, paths).executed_copy), 4).cells[0].outputs[0]["text"]
    assert text.split() == [str(tmp_path / "rel-out"), str(tmp_path / "rel-data"), "1"]
    dies = _write(tmp_path / "dies.ipynb", "import os\nos._exit(1)")
    with pytest.raises(NotebookFailed, match="dies.ipynb failed.*the kernel died"):
        execute_notebook(dies, paths)
    assert (paths.executed_notebooks / "dies.ipynb").exists()


def test_times_skip_malformed_rows_and_stages_of_another_profile_stop_the_build(tmp_path, capsys):
    from rlhf_helpers.core.config import get_profile

    times = tmp_path / "times.csv"
    times.write_text("notebook,seconds\n01_a.ipynb,12.5\nbroken row\n02_b.ipynb,n/a\n03_c.ipynb,4,extra\n")
    assert runner.read_times(times) == {"01_a.ipynb": 12.5} and runner.read_times(tmp_path / "none.csv") == {}
    profile = get_profile("colab", paths=Paths(root=tmp_path / "out", data_dir=REPO_ROOT / "data"))
    write_text(profile.paths.prepared_data / "info.json", '{"profile": "tiny", "source": "course"}')
    with pytest.raises(ValueError, match="built with the 'tiny' profile, and this notebook runs 'colab'"):
        runner.build_missing(profile, ["reward"])


def test_solutions_run_on_finished_stages_and_stop_when_an_exercise_touches_the_course(tmp_path, capsys):
    """`make solutions` on stand-in solutions notebooks: the course's stages are all finished (stand-in markers),
    so nothing is built; an exercise writing its own folder passes, one that writes into a course checkpoint or
    writes nothing at all fails, naming the file or the exercise."""
    from nbformat.v4 import new_markdown_cell

    from rlhf_helpers.core.artifacts import STAGES

    paths = Paths(root=tmp_path / "out", data_dir=REPO_ROOT / "data")
    for stage, spec in STAGES.items():
        folder = paths.prepared_data if stage == "data" else paths.checkpoint(stage)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / spec.done_marker).write_text('{"profile": "tiny"}')
    writes = {"00": "exercises/00.1/table.csv", "01": "checkpoints/sft_full/extra.bin", "02": None}
    folder = tmp_path / "solutions"
    folder.mkdir()
    for number, target in writes.items():
        code = "pass" if target is None else (f"from pathlib import Path; import os\np = Path(os.environ['RLHF_OUTPUT_DIR'])"
                                              f" / {target!r}\np.parent.mkdir(parents=True, exist_ok=True)\np.write_text('x')")
        cells = [new_markdown_cell("## Exercise 1 · core · ~5 min\n> the question"), new_code_cell(code)]
        nbformat.write(new_notebook(cells=cells), str(folder / f"{number}_x_solutions.ipynb"))
    assert runner.exercise_ids(folder / "00_x_solutions.ipynb") == ["00.1"]
    runs = runner.run_solutions("tiny", ["00"], paths, folder)
    assert [r.notebook for r in runs] == ["00_x_solutions.ipynb"] and "Earlier stages found" in capsys.readouterr().out
    assert (paths.root / "exercises" / runner.SOLUTION_TIMES).read_text().splitlines()[1].startswith("00_x_solutions.ipynb,")
    with pytest.raises(runner.CourseChanged, match="changed 1 file.*checkpoints/sft_full/extra.bin"):
        runner.run_solutions("tiny", ["01"], paths, folder)
    with pytest.raises(NotebookFailed, match=r"wrote nothing .*: 02\.1$"):
        runner.run_solutions("tiny", ["02"], paths, folder)
    before = runner.course_digest(paths)
    (paths.root / "exercises" / "00.1" / "table.csv").write_text("changed")  # exercises and executed copies
    (paths.executed_notebooks / "00_x_solutions.ipynb").write_text("{}")  # are not the course's files
    assert runner.course_digest(paths) == before and "checkpoints/sft_full/extra.bin" in before
