"""Evaluation (notebook 06): the policy registry and its skipped stages, loading the stages' checkpoints, the
training logs, the summary writer, the plots and the explorer. (The measurement itself: test_compare.py and
test_text_metrics.py; the judges: test_judge.py.)"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from test_compare import PROMPTS, gen_cfg

from rlhf_helpers import evaluation as ev
from rlhf_helpers import ppo_runs
from rlhf_helpers.core import compare
from rlhf_helpers.core.artifacts import BASE_INFO, LOG_HISTORY, PPO_INFO, PPO_LOG, Paths, notebook
from rlhf_helpers.core.config import EvalConfig, get_profile
from rlhf_helpers.judge import GoldJudge

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest


class _LengthReward:
    """A stand-in learned reward: longer answers score higher (deterministic, no model)."""

    name = "length"

    def score(self, prompts, responses):
        import torch

        return torch.tensor([len(r.split()) / 10 for r in responses], dtype=torch.float32)


def _evaluate(tokenizer, make_tiny_model):
    policies = {"sft_full": compare.Policy("sft_full", "SFT (full)", make_tiny_model(seed=0), tokenizer),
                "ppo": compare.Policy("ppo", "PPO", make_tiny_model(seed=1), tokenizer)}
    cfg = EvalConfig(max_new_tokens=6, batch_size=4, bootstrap_samples=200)
    refs = [f"A reference answer about {p.split()[-1]}" for p in PROMPTS]
    return compare.evaluate_policies(policies, PROMPTS, refs, _LengthReward(), GoldJudge(), cfg, progress=False)


def _tiny_profile(tmp_path):
    return get_profile("tiny", paths=Paths(root=tmp_path / "out", data_dir=tmp_path / "data"))


# ------------------------------------------------------------------------------------------- policies
def test_missing_stages_are_skipped_naming_their_notebook(tmp_path):
    profile = _tiny_profile(tmp_path)
    loaded = ev.load_policies(profile)
    labels = [spec.label for spec in ev.POLICIES.values()]
    assert loaded.policies == {} and list(loaded.skipped) == labels  # keyed by label, for compare's notes
    for key, why in zip(ev.POLICIES, loaded.skipped.values(), strict=True):
        assert f"notebooks/{notebook(key)}" in why, why
    assert repr(loaded).splitlines()[:2] == ["loaded: none", f"skipped base: {loaded.skipped['base']}"]
    assert ev.load_reward(profile) is None
    with pytest.raises(ValueError, match="no policy to evaluate"):
        compare.evaluate_policies(loaded.policies, ["p"], ["r"], None, GoldJudge())
    with pytest.raises(ValueError, match="Unknown policies"):
        ev.load_policies(profile, ["dpo"])


def test_an_unfinished_checkpoint_is_skipped(tmp_path):
    profile = _tiny_profile(tmp_path)
    for stage in ("base", "ppo"):
        profile.paths.checkpoint(stage).mkdir(parents=True)
        (profile.paths.checkpoint(stage) / "config.json").write_text("{}")  # an interrupted save
    skipped = ev.load_policies(profile, ["base", "ppo"]).skipped
    assert f"{BASE_INFO} missing" in skipped["base"] and f"{PPO_INFO} missing" in skipped["PPO"]
    assert "notebooks/05_ppo.ipynb" in skipped["PPO"]


def test_base_and_ppo_load_from_their_finished_checkpoints(tmp_path, tiny_tokenizer, make_tiny_model):
    import torch

    profile = _tiny_profile(tmp_path)
    model = make_tiny_model(seed=3)
    for stage, marker in (("base", BASE_INFO), ("ppo", PPO_INFO)):
        folder = profile.paths.checkpoint(stage)
        model.save_pretrained(folder)
        tiny_tokenizer.save_pretrained(folder)
        (folder / marker).write_text("{}")
    loaded = ev.load_policies(profile, ["base", "ppo"])
    assert list(loaded.policies) == ["base", "ppo"] and loaded.skipped == {}
    ids = torch.tensor([[5, 6, 7]])
    for policy in loaded.policies.values():
        assert not policy.model.training
        assert policy.model.config.pad_token_id == policy.tokenizer.pad_token_id == tiny_tokenizer.pad_token_id
        assert policy.tokenizer.chat_template == tiny_tokenizer.chat_template
        with torch.no_grad():
            torch.testing.assert_close(policy.model(ids).logits.cpu(), model(ids).logits)


# ------------------------------------------------------------------------------------------- outputs
def _frame():
    import pandas as pd

    rows = []
    for i, name in enumerate(["base", "SFT (full)", "PPO"]):
        row = {c: 0.1 * (i + 1) for c in compare.RESULT_COLUMNS}
        row.update(policy=name, n=64, win_rate=[0.2, 0.5, 0.75][i], kl=[3.0, 0.0, 1.25][i], rouge1=[0.1, 0.3, 0.25][i])
        rows.append(row)
    frame = pd.DataFrame(rows, index=pd.Index(["base", "SFT (full)", "PPO"], name="model"))
    frame.loc["base", "reward_mean"] = float("nan")
    return frame


def test_summary_writer_builds_the_tables_from_a_results_frame(tmp_path):
    import matplotlib.pyplot as plt
    import pandas as pd

    from rlhf_helpers.core.plots import save_figure

    paths = Paths(root=tmp_path / "out", data_dir=tmp_path)
    fig = plt.figure()
    plot = save_figure(fig, "eval_rewards", paths)
    plt.close(fig)
    readme = ev.write_summary(_frame(), paths, plots={"rewards": plot, "rouge": paths.plots / "absent.png"},
                              notes=["PPO: skipped for a test"], meta={"reference_label": "SFT (full)", "seed": 0})
    text = readme.read_text()
    assert readme == paths.results / "README.md"
    assert "| model | reward mean | reward median |" in text and "win rate vs SFT (full)" in text
    assert "| PPO | " in text and "0.750" in text and "| base | – |" in text  # NaN shown as a dash
    assert "| model | ROUGE-1 | ROUGE-2 | ROUGE-L | ROUGE-Lsum | BLEU |" in text and "| SFT (full) | 0.300 |" in text
    assert "![mean rewards with 95% CIs](../plots/eval_rewards.png)" in text and "absent.png" not in text
    assert "- PPO: skipped for a test" in text
    assert "`rlhf_helpers/core/metrics/`" in text  # where the metric modules are shipped
    rouge = pd.read_csv(paths.results / "eval_rouge.csv", index_col=0)
    assert list(rouge.index) == ["base", "SFT (full)", "PPO"] and rouge.loc["PPO", "ROUGE-1"] == 0.25
    rewards = pd.read_csv(paths.results / "eval_rewards.csv", index_col=0)
    assert rewards.loc["base", "KL to SFT (full) (k1)"] == 3.0
    assert not list(paths.results.glob(".*tmp"))  # atomic writes leave no temporary file
    with pytest.raises(ValueError, match="lacks columns"):
        ev.write_summary(_frame().drop(columns="bleu"), paths)


def test_training_logs_are_read_from_each_stages_log_file(tmp_path):
    paths = Paths(root=tmp_path / "out", data_dir=tmp_path)
    logs, notes = ev.load_training_logs(paths)
    assert logs == {} and [n.split("'")[1] for n in notes] == list(ev.TRAINING_KEYS)
    assert all(f"notebooks/{notebook(s)}" in n for s, n in zip(ev.TRAINING_KEYS, notes, strict=True))
    for stage in ev.TRAINING_KEYS:
        paths.checkpoint(stage).mkdir(parents=True)
    (paths.checkpoint("base") / BASE_INFO).write_text(json.dumps({"losses": [3.0, 2.5], "params": 1}))
    (paths.checkpoint("sft_full") / LOG_HISTORY).write_text(json.dumps([{"step": 1, "loss": 2.0}]))
    (paths.checkpoint("ppo") / PPO_LOG).write_text('{"step": 1, "objective/kl": 0.1}\n\n{"step": 2}\n')
    logs, notes = ev.load_training_logs(paths)
    assert logs == {"base": [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.5}],
                    "sft_full": [{"step": 1, "loss": 2.0}],
                    "ppo": [{"step": 1, "objective/kl": 0.1}, {"step": 2}]}
    assert [n.split("'")[1] for n in notes] == ["sft_qlora", "reward"]
    (paths.checkpoint("reward") / LOG_HISTORY).write_text("[{")
    with pytest.raises(ValueError, match=f"{LOG_HISTORY}:1: invalid JSON"):
        ev.load_training_logs(paths)


def test_plots_logs_and_summary_of_a_real_evaluation(tmp_path, tiny_tokenizer, make_tiny_model):
    paths = Paths(root=tmp_path / "out", data_dir=tmp_path)
    result = _evaluate(tiny_tokenizer, make_tiny_model)
    plots = ev.make_plots(result, paths)
    assert {"rewards", "rouge", "lengths", "win_rates"} <= set(plots) and "proxy_vs_gold" not in plots
    assert any("05_ppo.ipynb" in n for n in result.notes)  # no PPO logs: skipped with a note
    # a saved beta sweep and a PPO log bring the proxy-vs-gold and training-curve plots
    history = [{"step": s, "objective/kl": 0.5 * s, "objective/scores": 0.1 * s, "objective/gold": 0.3} for s in (1, 2)]
    ppo_runs.save_beta_sweep({0.01: history, 0.1: history[:1]}, paths)
    (paths.checkpoint("ppo")).mkdir(parents=True)
    (paths.checkpoint("ppo") / PPO_LOG).write_text("\n".join(json.dumps(r) for r in history))
    logs = ppo_runs.load_ppo_logs(paths)
    assert list(logs) == ["PPO run", "sweep beta=0.01", "sweep beta=0.1"] and len(logs["sweep beta=0.1"]) == 1
    plots = ev.make_plots(result, paths)
    assert {"proxy_vs_gold", "training_curves"} <= set(plots) and all(p.exists() for p in plots.values())
    text = ev.write_summary(result, paths, plots=plots).read_text()
    assert "../plots/eval_proxy_vs_gold.png" in text and "../plots/eval_training_curves.png" in text
    assert (paths.results / "eval_qualitative.csv").exists() and (paths.results / "eval_answers.csv").exists()
    assert not (paths.results / "eval_by_split.csv").exists() and "per slice" not in text  # no splits: no slice table
    result.splits = ["seen_task" if i % 2 else "unseen_task" for i in range(len(result.prompts))]
    text = ev.write_summary(result, paths, plots=plots).read_text()
    saved = pd.read_csv(paths.results / "eval_by_split.csv")
    assert list(saved["split"].unique()) == ["unseen_task", "seen_task"]
    assert "per slice of the prompts" in text and "| seen_task / PPO |" in text
    (paths.checkpoint("ppo") / PPO_LOG).write_text('{"step": 1}\n{broken\n')
    with pytest.raises(ValueError, match=r"log.jsonl:2: invalid JSON"):
        ppo_runs.load_ppo_logs(paths)


def test_figures_plot_each_metric_where_the_records_have_it():
    import matplotlib.pyplot as plt

    runs = {"a": [{"objective/kl": 0.1, "objective/scores": 1.0}, {"objective/kl": 0.2, "objective/scores": 1.5},
                  {"objective/scores": 9.0}]}  # no KL: not a point
    fig = ev.proxy_gold_over_kl(runs)
    assert len(fig.axes) == 1  # no gold score in the logs: the proxy panel only
    line = fig.axes[0].get_lines()[0]
    assert list(line.get_xdata()) == [0.1, 0.2] and list(line.get_ydata()) == [1.0, 1.5]
    plt.close(fig)
    curves = {"SFT": [{"step": 1, "loss": 2.0, "eval_loss": None}, {"step": 2, "loss": 1.5, "eval_loss": 1.7}]}
    fig = ev.training_curves(curves, {"SFT": ("loss", "eval_loss", "absent")})
    assert [(list(ln.get_xdata()), ln.get_label()) for ln in fig.axes[0].get_lines()] == [([1, 2], "loss"),
                                                                                         ([2], "eval_loss")]
    plt.close(fig)


# ------------------------------------------------------------------------------------------- explorer
def test_explorer_answers_a_picked_or_typed_prompt(tiny_tokenizer, make_tiny_model):
    policies = {"A": make_tiny_model(seed=0), "B": (make_tiny_model(seed=1), tiny_tokenizer)}
    box = ev.explorer(policies, tiny_tokenizer, _LengthReward(), prompts=PROMPTS[:3], cfg=gen_cfg())
    pick, typed, button, output = box.children
    assert "<b>A</b>" in output.value and "<b>B</b>" in output.value and "gold judge" in output.value
    pick.value = PROMPTS[2]
    assert typed.value == PROMPTS[2]
    typed.value = "My own prompt about pasta"
    button.click()
    table = ev.answer_table("My own prompt about pasta", policies, tiny_tokenizer, _LengthReward(), cfg=gen_cfg())
    assert list(table.index) == ["A", "B"] and table.loc["A", "answer"] in output.value.replace("&#x27;", "'")
    typed.value = "  "
    button.click()
    assert "Type a prompt" in output.value


def test_markdown_table_keeps_integers_whole_and_floats_rounded():
    frame = pd.DataFrame({"wins": [140, 5], "win rate": [0.890625, float("nan")], "note": ["a|b", "c"]},
                         index=pd.Index(["PPO", "SFT"], name="model"))
    assert ev.markdown_table(frame).splitlines() == [
        "| model | wins | win rate | note |", "|---|---:|---:|---:|",
        "| PPO | 140 | 0.891 | a\\|b |", "| SFT | 5 | – | c |"]


# ------------------------------------------------------------------------------ notebook 06's exercises
def test_sweep_policy_loader_reads_the_sweep_folder_or_names_notebook_05(tmp_path, tiny_tokenizer, make_tiny_model):
    import dataclasses

    import torch

    course = _tiny_profile(tmp_path)
    with pytest.raises(ev.MissingStageError, match="05_ppo.ipynb"):
        ev.sweep_policy_loader(0.5)(course)
    model = make_tiny_model(seed=4)
    folder = ppo_runs.sweep_policy_dir(course.paths, 0.5)
    model.save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    exercise = dataclasses.replace(course, paths=Paths(tmp_path / "ex", tmp_path / "data", reads_from=course.paths.root))
    loaded, tokenizer = ev.sweep_policy_loader(0.5)(exercise)  # an exercise reads the course's sweep
    assert not loaded.training and tokenizer.pad_token_id == tiny_tokenizer.pad_token_id
    with torch.no_grad():
        torch.testing.assert_close(loaded(torch.tensor([[5, 6]])).logits.cpu(), model(torch.tensor([[5, 6]])).logits)
    ev.register_policy("ppo_test_sweep", "PPO (sweep)", ev.sweep_policy_loader(0.5))
    try:
        assert list(ev.load_policies(exercise, ["ppo_test_sweep"]).policies) == ["ppo_test_sweep"]
        assert list(ev.load_policies(exercise, ["ppo_test_sweep", "base"]).skipped) == ["base"]  # no base anywhere
    finally:
        del ev.POLICIES["ppo_test_sweep"]


def test_tie_table_counts_ties_and_the_win_rate_without_them():
    frame = pd.DataFrame({"wins": [0, 6, 1], "ties": [10, 2, 9], "losses": [0, 2, 0], "win_rate": [0.5, 0.7, 0.55]},
                         index=["SFT", "PPO", "QLoRA"]).reindex(["base", "SFT", "PPO", "QLoRA"])
    table = ev.tie_table(frame)
    assert list(table.index) == ["SFT", "PPO", "QLoRA"]  # base: no comparison
    assert table.loc["PPO", "win_rate_no_ties"] == 0.75 and table.loc["QLoRA", "win_rate_no_ties"] == 1.0
    assert table.loc["PPO", "tie_share"] == 0.2 and pd.isna(table.loc["SFT", "win_rate_no_ties"])  # all ties


def test_proxy_gold_disagreements_keep_reward_up_judge_down():
    rows = []
    for pid, (r_ppo, r_sft, j_ppo, j_sft) in enumerate([(2, 1, 0.2, 0.8), (3, 0, 0.1, 0.9), (2, 1, 0.9, 0.2),
                                                         (0, 1, 0.1, 0.8)]):
        rows += [{"policy": "PPO", "prompt_id": pid, "prompt": f"p{pid}", "answer": f"ppo{pid}", "reward": r_ppo,
                  "judge": j_ppo},
                 {"policy": "SFT (full)", "prompt_id": pid, "prompt": f"p{pid}", "answer": f"sft{pid}",
                  "reward": r_sft, "judge": j_sft}]
    found = ev.proxy_gold_disagreements(pd.DataFrame(rows))
    assert list(found["prompt"]) == ["p1", "p0"]  # largest reward gain first
    assert found.iloc[0]["PPO answer"] == "ppo1" and found.iloc[0]["judge_loss"] == pytest.approx(0.8)
    with pytest.raises(ValueError, match="no rows"):
        ev.proxy_gold_disagreements(pd.DataFrame(rows), policy="DPO")


def test_decoding_spread_compares_each_move_with_its_interval():
    def frame(win, judge):
        return pd.DataFrame({"n": [100], "win_rate": [win], "win_low": [win - 0.05], "win_high": [win + 0.05],
                             "judge_mean": [judge], "judge_std": [0.5], "reward_mean": [float("nan")],
                             "reward_std": [float("nan")]}, index=["PPO"])

    spread = ev.decoding_spread({"seed 0": frame(0.8, 0.70), "seed 1": frame(0.7, 0.71)})
    assert list(spread.index) == [("PPO", "judge_mean"), ("PPO", "win_rate")]  # NaN reward: left out
    win, judge = spread.loc[("PPO", "win_rate")], spread.loc[("PPO", "judge_mean")]
    assert win["spread"] == pytest.approx(0.1) and win["ci_half"] == pytest.approx(0.05) and win["beyond_ci"]
    assert judge["ci_half"] == pytest.approx(1.96 * 0.5 / 10) and not judge["beyond_ci"]
    assert win["seed 0"] == 0.8
