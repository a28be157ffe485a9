"""Every course notebook executed in order on the tiny profile, and the bars the course run must meet.

The course notebooks share one temporary output root, so each finds the artifacts of the ones before it,
exactly as in ``make course``. They run last (see ``conftest.py``): they are the slowest tests.
"""

from pathlib import Path

import nbformat
import pytest

from rlhf_helpers.core.artifacts import REPO_ROOT, STAGES, Paths, read_records
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


# The colab profile's settings shrunk to a smoke run: a few steps and updates, short answers, 40 held-out prompts.
SMOKE_SETTINGS = ";".join([
    "sft.max_steps=10", "sft.eval_steps=5", "sft.logging_steps=2", "qlora.max_steps=10", "qlora.eval_steps=5",
    "qlora.logging_steps=2", "reward.max_steps=10", "reward.eval_steps=5", "reward.logging_steps=2",
    "data.num_heldout_prompts=40", "eval.num_prompts=40", "generation.max_new_tokens=16", "eval.max_new_tokens=16",
    "ppo.total_updates=2", "ppo.brevity_updates=1", "ppo.sweep_updates=2", "ppo.batch_size=8", "ppo.mini_batch_size=4",
    "ppo.short_run_batch_size=8", "ppo.sweep_prompts=16", "ppo.response_length=16", "ppo.sample_every=1",
    "beyond.dpo_max_steps=2", "beyond.online_max_steps=2", "beyond.online_snapshot_every=1",
    "beyond.max_completion_length=16", "beyond.logging_steps=1"])


@pytest.mark.notebook
def test_every_notebook_runs_the_colab_code_path_on_hub_shaped_stand_ins(tmp_path_factory, monkeypatch):
    """Notebooks 00-07 on the colab profile's code path, offline: its Hub ids (gpt2, the judge, the Dahoas dataset)
    mapped by $RLHF_HUB_MAP to random stand-ins of their shape, its steps shrunk by $RLHF_SET. The claims the
    notebooks check are not checked ($RLHF_CHECK_CLAIMS=0): random weights in a few steps show nothing. The
    course-data-only cells say so and skip; every stage leaves its artifacts for the next notebook."""
    from rlhf_helpers.core import hub, standins

    root = tmp_path_factory.mktemp("colab")
    monkeypatch.setenv(hub.ENV, standins.build(root / "standins", REPO_ROOT / "data"))
    monkeypatch.setenv("RLHF_SET", SMOKE_SETTINGS)
    monkeypatch.setenv("RLHF_CHECK_CLAIMS", "0")
    paths = Paths(root=root / "outputs", data_dir=REPO_ROOT / "data")
    printed = {}
    for notebook in NOTEBOOKS:
        run = execute_notebook(notebook, paths, profile="colab")
        printed[notebook.name[:2]] = "\n".join(o.get("text", "") for c in nbformat.read(str(run.executed_copy), 4).cells
                                                if c.cell_type == "code" for o in c.outputs)
        for stage, spec in STAGES.items():
            if spec.notebook == notebook.name and stage != "base":  # tiny's own base model; colab's is gpt2
                paths.finished(stage)
    assert "profile : colab" in printed["01"] and f"local   : gpt2 -> {root / 'standins' / 'gpt2'}" in printed["01"]
    assert "settings: sft.max_steps=10;" in printed["02"]
    assert "Course data only" in printed["01"] and "Course data only" in printed["04"] and "GPT2LMHeadModel" in printed["01"]
    assert "all prompts: PPO wins" in printed["05"]  # Hub data has no seen/unseen slices
    assert paths.plot("data_overview.png").exists() and paths.result("beyond_ppo.csv").exists()


@pytest.mark.notebook
def test_course_ppo_beats_sft_on_heldout_prompts(course_paths: Paths):
    """The bar of the PPO stage on the tiny profile, read from notebook 05's tables (it runs after the notebooks):
    PPO gets a higher learned reward than SFT on the held-out prompts and, on the seen-task slice (the headline),
    wins at least 3 prompts in 4 by the gold judge with an interval above 0.6 and a clear gold gain; the beta sweep
    shows over-optimisation (the smallest beta's gold rises, then falls) and the largest beta stays near SFT."""
    import pandas as pd

    table = pd.read_csv(course_paths.result("ppo_vs_sft.csv"), index_col=0)
    sft, ppo = table.loc["SFT (full)"], table.loc["PPO"]
    assert ppo["n"] == sft["n"] == 220
    assert ppo["reward_mean"] > sft["reward_mean"]
    assert 0 < ppo["kl"] < 10  # it moved, on a leash
    split = pd.read_csv(course_paths.result("ppo_vs_sft_by_split.csv")).set_index(["split", "model"])
    seen = split.loc[("seen_task", "PPO")]
    assert seen["n"] == 160 and seen["wins"] + seen["ties"] + seen["losses"] == 160
    assert seen["win_rate"] >= 0.75 and seen["win_low"] > 0.6, seen
    assert seen["judge_gain"] > 0.12, seen  # +0.155 / +0.193 / +0.166 for seeds 0 / 1 / 2 (make seeds)
    over = pd.read_csv(course_paths.result("ppo_overoptimization.csv")).sort_values("beta")
    low, high = over.iloc[0], over.iloc[-1]
    assert low["rise"] >= 0.05 and low["fall"] >= 0.05 and low["proxy_end"] > low["proxy_peak"], low
    assert high["kl_end"] < 3, high


@pytest.mark.notebook
def test_course_beyond_ppo_compares_every_method_with_intervals(course_paths: Paths):
    """Notebook 07's bar on the tiny profile, read from its table: every method is there with its intervals and its
    training wall time, and DPO wins at least 0.70 of the seen-task prompts against SFT by the gold judge."""
    import pandas as pd

    table = pd.read_csv(course_paths.result("beyond_ppo.csv"), index_col=0)
    assert set(table.method) == {"SFT", "PPO", "DPO", "IPO", "RLOO", "GRPO"}
    trained = table[table.method != "SFT"]
    assert ((trained.gold_low < trained.gold) & (trained.gold < trained.gold_high)).all()
    assert ((trained.win_low <= trained.win_rate) & (trained.win_rate <= trained.win_high)).all()
    assert (trained.train_seconds > 0).all() and trained.kl.notna().all()
    final = trained[~trained.index.str.contains("step")]  # a step-k snapshot may sit at SFT: k1 can be <= 0 there
    assert (final.kl > 0).all(), final.kl
    assert table[table.method == "DPO"].win_rate.max() >= 0.70, table[["win_rate", "win_low", "kl"]]
    logs = pd.DataFrame(read_records(course_paths.result("beyond_ppo_logs.jsonl")))
    for (method, beta), log in logs.dropna(subset=["rewards/margins"]).groupby(["method", "beta"]):
        # notebook 07: "the margin grows and the accuracy climbs over the run" (on the training batches): the last
        # two logged points (the last one may be a single step of 8 pairs) against the first
        for key in ("rewards/margins", "rewards/accuracies"):
            assert log[key].iloc[-2:].mean() > log[key].iloc[0], (method, beta, key, log[key].tolist())
