"""Full supervised fine-tuning and what both SFT notebooks share (rlhf_helpers.sft_full): the response-only loss
mask, full SFT and its checkpoint, loading, the training arguments per hardware, the peak-memory measure.

One tiny profile for the module (conftest: sft_profile, sft_prep, full_sft_run): the conftest's small course data, a 2-layer base built from it, and a short full
SFT run (trained once, shared by the tests below).
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import SFT_STEPS as STEPS

from rlhf_helpers import sft_full, sft_qlora
from rlhf_helpers.core import chat, loading
from rlhf_helpers.core.artifacts import MissingStageError, Paths
from rlhf_helpers.core.config import Profile, get_profile


def _texts(tokenizer, sft_prep, n=4):
    return [chat.format_example(tokenizer, r["prompt"], r["response"]) for r in sft_prep.sft["eval"].select(range(n))]


# ------------------------------------------------------------------------------------------- the loss mask
def test_collated_labels_mask_prompt_and_padding(sft_profile, sft_prep, tmp_path):
    """On a collated batch, labels are -100 on the prompt and the padding, the token ids on response + eos."""
    from datasets import Dataset

    source = sft_full.base_source(sft_profile)
    tokenizer = loading.load_tokenizer(source)
    model = loading.load_causal_lm(source, "float32")
    recs = sft_prep.sft["train"].select(range(3)).to_list()
    recs[1]["response"] = recs[1]["response"].split(".")[0] + "."  # shorter rows: the batch gets padding
    recs[2]["prompt"] = "Hi! " + recs[2]["prompt"] + " Please keep it short."
    records = Dataset.from_list(recs)
    trainer = sft_full.build_trainer(model, tokenizer, sft_profile.sft, records, sft_prep.sft["eval"], tmp_path, progress=False)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(recs))])
    ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    assert ids.shape[0] == 3 and (mask == 0).any()
    for row, rec in enumerate(recs):
        n_prompt = len(tokenizer(chat.format_prompt(tokenizer, rec["prompt"]), add_special_tokens=False)["input_ids"])
        n_real = int(mask[row].sum())
        assert (labels[row, :n_prompt] == -100).all()  # prompt: no loss
        assert (labels[row, n_real:] == -100).all()  # padding: no loss
        assert torch.equal(labels[row, n_prompt:n_real], ids[row, n_prompt:n_real])  # response: the next tokens
        trained = tokenizer.decode(ids[row, n_prompt:n_real])
        assert trained == " " + rec["response"] + tokenizer.eos_token  # the answer and the eos, nothing else


# ------------------------------------------------------------------------------------------------ full SFT
def test_full_sft_lowers_eval_loss_and_saves_a_clean_checkpoint(sft_profile, full_sft_run, sft_prep):
    losses = full_sft_run.eval_losses
    assert losses[0][0] == 0 and losses[-1][0] == STEPS
    assert losses[-1][1] < 0.7 * losses[0][1], losses  # a clear margin, not noise
    info = full_sft_run.info
    assert info["trainable_params"] == info["total_params"] > 0
    assert info["seconds_per_step"] > 0 and info["steps"] == STEPS
    path = sft_profile.paths.checkpoint("sft_full")
    names = {p.name for p in path.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "log_history.json", "train_info.json"} <= names
    assert not [n for n in names if n.startswith("checkpoint-") or n == "_trainer"]  # no intermediate checkpoints
    assert not [p for p in path.parent.iterdir() if ".tmp-" in p.name or p.name.endswith(".old")]
    assert json.loads((path / "log_history.json").read_text()) == full_sft_run.history
    model, tokenizer = sft_full.load_sft(sft_profile, "sft_full")
    assert sft_qlora.logit_difference(model, full_sft_run.model, tokenizer, _texts(tokenizer, sft_prep)) < 1e-4


def test_failed_run_leaves_the_finished_checkpoint_untouched(sft_profile, sft_prep, full_sft_run, monkeypatch):
    import trl

    path = sft_profile.paths.checkpoint("sft_full")
    before = (path / "model.safetensors").read_bytes()

    def boom(self, *args, **kwargs):
        raise RuntimeError("interrupted on purpose")

    monkeypatch.setattr(trl.SFTTrainer, "train", boom)
    with pytest.raises(RuntimeError, match="on purpose"):
        sft_full.train_full(sft_profile, sft_prep, progress=False)
    assert (path / "model.safetensors").read_bytes() == before
    assert not [p for p in path.parent.iterdir() if "-tmp-" in p.name]


def test_missing_stages_name_the_notebook(tmp_path):
    prof = Profile(name="tiny", paths=Paths(root=tmp_path, data_dir=tmp_path))
    with pytest.raises(MissingStageError, match="02_sft_full"):
        sft_full.load_sft(prof, "sft_full")
    (tmp_path / "checkpoints" / "sft_qlora").mkdir(parents=True)
    (tmp_path / "checkpoints" / "sft_qlora" / "adapter_config.json").write_text("{}")  # half-written run
    with pytest.raises(MissingStageError, match="no finished 'sft_qlora' run"):
        sft_full.load_sft(prof, "sft_qlora")


# ----------------------------------------------------------------------------------- arguments per hardware
@pytest.mark.parametrize(("bf16_ok", "capability"), [(False, (7, 5)), (True, (8, 0))], ids=["T4-fp16", "ampere-bf16"])
def test_colab_training_arguments_on_a_cuda_gpu(monkeypatch, bf16_ok, capability, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # a T4 says so too: not asked
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: capability)
    colab = get_profile("colab")
    for cfg, optim in ((colab.sft, "adamw_torch"), (colab.qlora, "paged_adamw_8bit")):
        kw = sft_full.training_kwargs(cfg, tmp_path)
        assert (kw["bf16"], kw["fp16"], kw["use_cpu"]) == (bf16_ok, not bf16_ok, False)
        assert kw["optim"] == optim and kw["assistant_only_loss"] is True
        assert kw["save_strategy"] == "no" and kw["report_to"] == "none" and kw["dataloader_num_workers"] == 0
        assert kw["max_length"] == cfg.max_length == 512
    assert colab.qlora.base is None and colab.qlora.max_steps == colab.sft.max_steps  # same gpt2, same budget
    bnb_cfg = loading.bnb_4bit_config(colab.qlora)
    assert bnb_cfg.load_in_4bit and bnb_cfg.bnb_4bit_quant_type == "nf4" and bnb_cfg.bnb_4bit_use_double_quant
    assert bnb_cfg.bnb_4bit_compute_dtype == (torch.bfloat16 if bf16_ok else torch.float16)


def test_cpu_training_arguments(tmp_path, capsys):
    colab = get_profile("colab")
    kw = sft_full.training_kwargs(colab.qlora, tmp_path)  # the paged optimizer needs CUDA: plain AdamW here
    assert kw["optim"] == "adamw_torch" and "needs a CUDA GPU" in capsys.readouterr().out
    args = sft_full.build_training_args(get_profile("tiny").sft, tmp_path)
    assert args.use_cpu and not args.bf16 and not args.fp16
    assert not args.gradient_checkpointing and args.report_to == [] and args.assistant_only_loss


# ------------------------------------------------------------------------------ exercises (notebook 02)
def test_overrides_train_on_the_whole_sequence(sft_profile, sft_prep, tmp_path):
    """``overrides={"assistant_only_loss": False}`` (exercise 02.1): the prompt tokens get labels too."""
    source = sft_full.base_source(sft_profile)
    tokenizer = loading.load_tokenizer(source)
    model = loading.load_causal_lm(source, "float32")
    records = sft_prep.sft["train"].select(range(2))
    folder = sft_profile.paths.prepared_data
    files = sorted(folder.rglob("*"))
    for overrides, prompt_in_loss in ((None, False), ({"assistant_only_loss": False}, True)):
        trainer = sft_full.build_trainer(model, tokenizer, sft_profile.sft, records, records, tmp_path,
                                         progress=False, overrides=overrides)
        assert trainer.args.assistant_only_loss is not prompt_in_loss
        batch = trainer.data_collator([trainer.train_dataset[0]])
        n_prompt = len(tokenizer(chat.format_prompt(tokenizer, records[0]["prompt"]), add_special_tokens=False)["input_ids"])
        prompt_labels = batch["labels"][0, :n_prompt]
        assert bool((prompt_labels != -100).all()) is prompt_in_loss
        assert bool((prompt_labels == -100).all()) is not prompt_in_loss
    assert sorted(folder.rglob("*")) == files  # no cache files written into the prepared data (notebook 01's)


def test_response_eval_loss_is_the_runs_eval_loss(sft_profile, sft_prep, full_sft_run):
    """The same response-only loss as the trainer's ``eval_loss``; a trained model has a lower one than the base."""
    model, tokenizer = full_sft_run.model, full_sft_run.tokenizer
    loss = sft_full.response_eval_loss(model, tokenizer, sft_profile.sft, sft_prep.sft["eval"])
    assert loss == pytest.approx(full_sft_run.info["eval_loss"], rel=1e-4)
    base = loading.load_causal_lm(sft_full.base_source(sft_profile), "float32")
    base_loss = sft_full.response_eval_loss(base, tokenizer, sft_profile.sft, sft_prep.sft["eval"])
    assert base_loss == pytest.approx(full_sft_run.info["initial_eval_loss"], rel=1e-4)


def test_an_exercise_reads_the_course_base_and_builds_none(sft_profile, capsys):
    import dataclasses

    from rlhf_helpers import notebook_setup

    ex = notebook_setup.exercise_profile(sft_profile, "02.1")
    assert sft_full.base_source(ex) == sft_profile.paths.checkpoint("base")
    assert not ex.paths.checkpoint("base").exists()  # nothing built under the exercise's root
    other = dataclasses.replace(ex, model=dataclasses.replace(ex.model, n_layer=ex.model.n_layer + 1))
    assert sft_full._course_base(other) is None  # another architecture: the course's base does not fit
    assert sft_full._course_base(sft_profile) is None  # the course's own profile builds (or finds) its own
