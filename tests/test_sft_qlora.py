"""QLoRA (rlhf_helpers.sft_qlora): 4-bit base + trained adapters, merging them, and the comparison table of the
base, full SFT and QLoRA.

One tiny profile for the module (conftest: sft_profile, sft_prep, full_sft_run), as in test_sft_full.py: the conftest's small course data, a 2-layer base built
from it, and short runs (full SFT for the comparison, and QLoRA; trained once, shared by the tests below).
"""

from __future__ import annotations

import dataclasses

import pytest

from rlhf_helpers import judge, sft_full, sft_qlora
from rlhf_helpers.core import base_model, chat, loading, measure
from rlhf_helpers.core.artifacts import MissingStageError


@pytest.fixture(scope="module")
def qlora_run(sft_profile, sft_prep) -> sft_full.SFTRun:
    return sft_qlora.train_qlora(sft_profile, sft_prep, progress=False)


def _texts(tokenizer, sft_prep, n=4):
    return [chat.format_example(tokenizer, r["prompt"], r["response"]) for r in sft_prep.sft["eval"].select(range(n))]


# --------------------------------------------------------------------------------------------------- QLoRA
def test_qlora_trains_adapters_on_4bit_linear_layers_and_one_tied_embedding(qlora_run):
    import bitsandbytes as bnb
    import torch

    model = qlora_run.model
    assert qlora_run.info["quantized"]
    blocks = [m for n, m in model.named_modules() if ".h." in n and n.endswith(("c_attn", "c_proj", "c_fc"))]
    assert blocks and all(isinstance(m.base_layer, bnb.nn.Linear4bit) for m in blocks)  # wrapped by LoRA
    trained_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert all(p.abs().sum() > 0 for p in trained_b)  # B starts at zero: nonzero means the adapters learned
    # train_embeddings (the tiny default): one trainable copy of the tied embeddings, shared by the output head
    embedding, head = model.get_input_embeddings(), model.get_output_embeddings()
    assert embedding.weight is head.weight and embedding.weight.requires_grad
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    lora = sum(p.numel() for n, p in trainable if "lora_" in n)
    assert {n for n, _ in trainable if "lora_" not in n} == {n for n, p in trainable if p is embedding.weight}
    assert qlora_run.info["trainable_params"] == lora + embedding.weight.numel()
    assert not torch.equal(embedding.weight, embedding.original_module.weight)  # the copy trained, the base did not
    assert qlora_run.info["trainable_params"] < 0.75 * qlora_run.info["total_params"]
    full_size = measure.weights_mb(loading.load_causal_lm(qlora_run.info["base"], "float32"))
    assert qlora_run.info["weights_mb"] < 0.8 * full_size
    losses = qlora_run.eval_losses  # a nearly untrained 2-layer base: it moves
    assert losses[-1][1] < 0.97 * losses[0][1], losses


@pytest.mark.filterwarnings("ignore:fan_in_fan_out:UserWarning")  # adapters of Linear4bit on Conv1D: peft adapts
@pytest.mark.filterwarnings("ignore:You have requested `ensure_weight_tying`:UserWarning")  # see load_adapters
def test_merged_model_matches_the_adapters(sft_profile, qlora_run, sft_prep):
    from peft import PeftModel

    adapters, tokenizer = sft_qlora.load_adapters(sft_profile)
    merged, _ = sft_full.load_sft(sft_profile, "sft_qlora")
    texts = _texts(tokenizer, sft_prep)
    assert not getattr(merged, "is_loaded_in_4bit", False)
    assert merged.get_output_embeddings().weight is merged.get_input_embeddings().weight  # tied again, as the base
    assert sft_qlora.logit_difference(adapters, merged, tokenizer, texts) < 1e-3  # W' = deq(q(W)) + BA: same function
    assert sft_qlora.logit_difference(qlora_run.model, adapters, tokenizer, texts) < 1e-3  # saved = trained, the
    # trained embeddings and output head included
    # merging into the original full-precision weights reproduces adapters on that base instead ...
    source, path = qlora_run.info["base"], sft_profile.paths.checkpoint("sft_qlora")
    original = sft_qlora.merge_adapters(path, source, sft_profile.qlora, method="original")
    on_full = PeftModel.from_pretrained(loading.load_causal_lm(source, "float32"), str(path)).eval()
    assert sft_qlora.logit_difference(on_full, original, tokenizer, texts) < 1e-3
    # ... which differs from the trained 4-bit model by the quantization error the adapters never saw
    assert sft_qlora.logit_difference(adapters, original, tokenizer, texts) > 1e-2


def test_embedding_modules_are_trained_as_one_tied_copy_or_not_at_all(sft_profile):
    from peft import get_peft_model

    def peft_model(train_embeddings: bool):
        base = loading.load_causal_lm(sft_full.base_source(sft_profile), "float32")
        names = sft_qlora.embedding_modules(base) if train_embeddings else ()
        return get_peft_model(base, loading.lora_config(4, 8, model=base, modules_to_save=names))

    assert sft_qlora.embedding_modules(loading.load_causal_lm(sft_full.base_source(sft_profile), "float32")) == [
        "transformer.wte", "lm_head"]
    with_embeddings, adapters_only = peft_model(True), peft_model(False)
    assert with_embeddings.get_input_embeddings().weight is with_embeddings.get_output_embeddings().weight
    extra = with_embeddings.get_input_embeddings().weight.numel()
    assert (with_embeddings.num_parameters(only_trainable=True)
            == adapters_only.num_parameters(only_trainable=True) + extra)
    assert all("lora_" in n for n, p in adapters_only.named_parameters() if p.requires_grad)


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


# ------------------------------------------------------------------------------ exercises (notebook 03)
@pytest.mark.filterwarnings("ignore:fan_in_fan_out:UserWarning")
def test_train_variants_one_row_per_variant(sft_profile, sft_prep):
    from rlhf_helpers import notebook_setup

    ex = notebook_setup.exercise_profile(sft_profile, "03.1")
    ex = dataclasses.replace(ex, qlora=dataclasses.replace(ex.qlora, max_steps=4, eval_steps=2))
    gen = dataclasses.replace(ex.generation, max_new_tokens=8)
    heldout = sft_prep.heldout.select(range(4))
    variants = {"r=4": {"lora_r": 4, "lora_alpha": 8}, "r=8, adapters only": {"train_embeddings": False},
                "r=8, float": {"load_in_4bit": False}}
    table, runs = sft_qlora.train_variants(dataclasses.replace(ex, generation=gen), sft_prep, variants, heldout)
    assert list(table.index) == list(runs) == list(variants)
    embeddings = runs["r=4"].model.get_input_embeddings().weight.numel()
    adapters_r8 = table.loc["r=8, adapters only", "trainable params"]
    assert table.loc["r=4", "trainable params"] - embeddings == adapters_r8 // 2  # rank halves the adapters
    assert table.loc["r=8, float", "trainable params"] == adapters_r8 + embeddings
    assert table["4-bit base"].tolist() == [True, True, False]
    assert table.loc["r=8, float", "weights MB"] > table.loc["r=4", "weights MB"]
    assert (table["eval loss"] == [r.info["eval_loss"] for r in runs.values()]).all()
    assert table["ROUGE-L"].between(0, 1).all() and table["gold"].between(0, 1).all()
    assert (ex.paths.checkpoint("sft_qlora") / "merged").is_dir()  # the last variant, under the exercise's root
    assert ex.paths.root.is_relative_to(sft_profile.paths.root / "exercises")
