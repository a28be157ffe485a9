"""QLoRA (rlhf_helpers.sft_qlora): 4-bit base + trained adapters, merging them, and the comparison table of the
base, full SFT and QLoRA.

One tiny profile for the module (conftest: sft_profile, sft_prep, full_sft_run), as in test_sft_full.py: the conftest's small course data, a 2-layer base built
from it, and short runs (full SFT for the comparison, and QLoRA; trained once, shared by the tests below).
"""

from __future__ import annotations

import dataclasses

import pytest

from rlhf_helpers import judge, sft_full, sft_qlora
from rlhf_helpers.core import base_model, chat, loading
from rlhf_helpers.core.artifacts import MissingStageError


@pytest.fixture(scope="module")
def qlora_run(sft_profile, sft_prep) -> sft_full.SFTRun:
    return sft_qlora.train_qlora(sft_profile, sft_prep, progress=False)


def _texts(tokenizer, sft_prep, n=4):
    return [chat.format_example(tokenizer, r["prompt"], r["response"]) for r in sft_prep.sft["eval"].select(range(n))]


# --------------------------------------------------------------------------------------------------- QLoRA
def test_qlora_trains_only_adapters_on_4bit_linear_layers(qlora_run):
    import bitsandbytes as bnb

    model = qlora_run.model
    assert qlora_run.info["quantized"]
    blocks = [m for n, m in model.named_modules() if ".h." in n and n.endswith(("c_attn", "c_proj", "c_fc"))]
    assert blocks and all(isinstance(m.base_layer, bnb.nn.Linear4bit) for m in blocks)  # wrapped by LoRA
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    trained_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert all(p.abs().sum() > 0 for p in trained_b)  # B starts at zero: nonzero means the adapters learned
    assert qlora_run.info["trainable_params"] < 0.25 * qlora_run.info["total_params"]
    full_size = sft_full.weights_mb(loading.load_causal_lm(qlora_run.info["base"], "float32"))
    assert qlora_run.info["weights_mb"] < 0.8 * full_size
    losses = qlora_run.eval_losses  # a nearly untrained 2-layer base: LoRA alone cannot move it much, but it moves
    assert losses[-1][1] < 0.97 * losses[0][1], losses


@pytest.mark.filterwarnings("ignore:fan_in_fan_out:UserWarning")  # adapters of Linear4bit on Conv1D: peft adapts
def test_merged_model_matches_the_adapters(sft_profile, qlora_run, sft_prep):
    from peft import PeftModel

    adapters, tokenizer = sft_qlora.load_adapters(sft_profile)
    merged, _ = sft_full.load_sft(sft_profile, "sft_qlora")
    texts = _texts(tokenizer, sft_prep)
    assert not getattr(merged, "is_loaded_in_4bit", False)
    assert sft_qlora.logit_difference(adapters, merged, tokenizer, texts) < 1e-3  # W' = deq(q(W)) + BA: same function
    # merging into the original full-precision weights reproduces adapters on that base instead ...
    source, path = qlora_run.info["base"], sft_profile.paths.checkpoint("sft_qlora")
    original = sft_qlora.merge_adapters(path, source, sft_profile.qlora, method="original")
    on_full = PeftModel.from_pretrained(loading.load_causal_lm(source, "float32"), str(path)).eval()
    assert sft_qlora.logit_difference(on_full, original, tokenizer, texts) < 1e-3
    # ... which differs from the trained 4-bit model by the quantization error the adapters never saw
    assert sft_qlora.logit_difference(adapters, original, tokenizer, texts) > 1e-2


# --------------------------------------------------------------------------------------- the comparison
def test_comparison_table_from_both_reports(sft_profile, sft_prep, full_sft_run, qlora_run):
    base, tokenizer = base_model.load_base(sft_profile, progress=False)
    heldout = sft_prep.heldout.select(range(4))
    gen = dataclasses.replace(sft_profile.generation, max_new_tokens=8)
    prof = dataclasses.replace(sft_profile, generation=gen)
    answers = sft_full.heldout_answers({"base": base, "sft_full": full_sft_run.model}, tokenizer, heldout, prof)
    sft_full.save_report(sft_profile, full_sft_run, answers, heldout, base_model=base)
    with pytest.raises(MissingStageError, match="metrics"):
        sft_qlora.comparison_table(sft_profile)  # QLoRA's report is missing
    answers = sft_full.heldout_answers({"sft_qlora": qlora_run.model}, tokenizer, heldout, prof)
    sft_full.save_report(sft_profile, qlora_run, answers, heldout)
    table, samples = sft_qlora.comparison_table(sft_profile, n_samples=3)
    assert list(table.index) == ["base", "sft_full", "sft_qlora"]
    assert table.loc["base", "trainable params"] == 0
    assert table.loc["sft_qlora", "trainable params"] < table.loc["sft_full", "trainable params"]
    assert table.loc["base", "eval loss"] == full_sft_run.info["initial_eval_loss"]
    assert table["ROUGE-L"].between(0, 1).all()
    # the gold judge's mean score of each model's answers, and step 0 of each run (the base, 4-bit for QLoRA)
    gold = judge.gold_scores(list(heldout["prompt"]), answers["sft_qlora"])
    assert table.loc["sft_qlora", "gold"] == pytest.approx(sum(gold) / len(gold))
    assert table.loc["sft_qlora", "step-0 eval loss"] == qlora_run.info["initial_eval_loss"]
    assert table.loc["sft_full", "step-0 eval loss"] == table.loc["base", "eval loss"]
    assert list(samples.columns) == ["prompt", "reference", "base", "sft_full", "sft_qlora"] and len(samples) == 3
    assert sft_profile.paths.result("sft_comparison.csv").exists() and sft_profile.paths.result("sft_samples.csv").exists()
