"""core.loading: the one precision decision, loading (plain, 4-bit, LoRA) and parameter counts."""

from __future__ import annotations

import warnings

import pytest
import torch

from rlhf_helpers.core import loading
from rlhf_helpers.core.config import QLoRAConfig, get_profile


# -------------------------------------------------------------------------------------------- loading
def test_resolve_dtype():
    if not torch.cuda.is_available():
        assert loading.resolve_dtype("auto") is torch.float32
    assert loading.resolve_dtype("bf16") is torch.bfloat16 and loading.resolve_dtype(torch.float16) is torch.float16
    assert loading.resolve_dtype(get_profile("tiny").model) is loading.resolve_dtype("auto")
    with pytest.raises(ValueError, match="Unknown dtype 'int3'"):
        loading.resolve_dtype("int3")


@pytest.fixture
def saved_tiny_model(make_tiny_model, tiny_tokenizer, tmp_path):
    model = make_tiny_model()
    model.save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    return model, tmp_path


def test_load_causal_lm_round_trip(saved_tiny_model):
    model, path = saved_tiny_model
    loaded = loading.load_causal_lm(path, "float32", device="cpu")
    x = torch.randint(0, model.config.vocab_size, (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).logits, model(x).logits)


def test_load_4bit_quantizes_linear_layers_on_cpu(saved_tiny_model):
    import bitsandbytes as bnb

    model, path = saved_tiny_model
    q = loading.load_4bit(path, QLoRAConfig(), device="cpu")
    assert getattr(q, "is_loaded_in_4bit", False)
    n4 = sum(isinstance(m, bnb.nn.Linear4bit) for m in q.modules())
    assert n4 == 4 * model.config.n_layer  # GPT-2's Conv1D c_attn, c_proj, c_fc, mlp.c_proj per block
    assert q.transformer.h[0].attn.c_attn.weight.quant_state.quant_type == "nf4"
    assert loading.parameter_counts(q)[1] == loading.parameter_counts(model)[1]  # logical sizes
    x = torch.randint(0, model.config.vocab_size, (2, 12))
    with torch.no_grad():
        a, b = model(x).logits.flatten(), q(x).logits.flatten()
    assert torch.corrcoef(torch.stack([a, b]))[0, 1] > 0.8  # quantized, not garbage

    # QLoRA: LoRA on top trains, even after an eval-mode forward (bitsandbytes' CPU repacking is off)
    from peft import get_peft_model

    peft_model = get_peft_model(q, loading.lora_config(4, 32, 0.05))
    peft_model.train()
    loss = peft_model(input_ids=x, labels=x).loss
    loss.backward()
    grads = [p.grad for n, p in peft_model.named_parameters() if "lora_B" in n]
    assert grads and all(g is not None for g in grads)


def test_load_4bit_falls_back_with_a_warning(saved_tiny_model, monkeypatch, capsys):
    import bitsandbytes as bnb

    model, path = saved_tiny_model

    def broken():
        raise RuntimeError("no bitsandbytes backend for this device")

    monkeypatch.setattr(loading, "import_bitsandbytes", broken)
    plain = loading.load_4bit(path, QLoRAConfig(), device="cpu")
    assert "WARNING" in capsys.readouterr().out
    assert not getattr(plain, "is_loaded_in_4bit", False)
    assert not any(isinstance(m, bnb.nn.Linear4bit) for m in plain.modules())
    assert loading.parameter_counts(plain) == loading.parameter_counts(model)
    # any other failure of the 4-bit load is an error, not a silent full-precision model
    monkeypatch.undo()
    from transformers import AutoModelForCausalLM

    plain_load = AutoModelForCausalLM.from_pretrained

    def no_memory_for_4bit(*args, **kwargs):
        if "quantization_config" in kwargs:
            raise RuntimeError("out of memory")
        return plain_load(*args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", no_memory_for_4bit)
    with pytest.raises(RuntimeError, match="out of memory"):
        loading.load_4bit(path, QLoRAConfig(), device="cpu")
    assert "WARNING" not in capsys.readouterr().out
    monkeypatch.undo()
    # load_in_4bit=False (the cpu profile) loads the plain model without a warning
    loading.load_4bit(path, QLoRAConfig(load_in_4bit=False), device="cpu")
    assert capsys.readouterr().out == ""


def test_lora_all_linear_targets_gpt2_conv1d_layers_but_not_the_head(make_tiny_model):
    from peft import get_peft_model

    model = make_tiny_model()
    total_before = loading.parameter_counts(model)[1]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        peft_model = get_peft_model(model, loading.lora_config(4, 8, 0.05, model=model))
    assert not [w for w in caught if "fan_in_fan_out" in str(w.message)]  # set up front, no peft warning
    targeted = {n.rsplit(".", 1)[0].split("transformer.")[-1] for n, _ in peft_model.named_modules()
                if n.endswith("lora_A")}
    assert {"h.0.attn.c_attn", "h.0.attn.c_proj", "h.0.mlp.c_fc", "h.0.mlp.c_proj"} <= targeted
    assert not any("lm_head" in t for t in targeted)
    trainable, total = loading.parameter_counts(peft_model)
    d, L, r = model.config.n_embd, model.config.n_layer, 4
    expected_lora = L * r * ((d + 3 * d) + (d + d) + (d + 4 * d) + (4 * d + d))
    assert trainable == expected_lora and total == total_before + expected_lora


def test_precision_is_decided_once_for_every_stage(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cpu = loading.precision()
    assert (cpu.device, cpu.dtype, cpu.mixed_precision) == ("cpu", torch.float32, "no")
    assert cpu.trainer_flags() == {"bf16": False, "fp16": False, "use_cpu": True}
    assert loading.precision("qwen2") == cpu  # the model family only matters on a GPU without native bf16


@pytest.mark.parametrize(("gpu", "capability", "model_type", "dtype", "mixed"), [
    ("T4", (7, 5), "gpt2", torch.float16, "fp16"),  # is_bf16_supported() says True there: emulated, not asked
    ("V100", (7, 0), None, torch.float16, "fp16"),
    ("T4", (7, 5), "qwen2", torch.float32, "no"),  # Qwen2 overflows in fp16: float32, not fp16
    ("A100", (8, 0), "gpt2", torch.bfloat16, "bf16"),
    ("L4", (8, 9), "qwen2", torch.bfloat16, "bf16"),  # native bf16 has fp32's range: no overflow
])
def test_precision_follows_the_compute_capability(monkeypatch, gpu, capability, model_type, dtype, mixed):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # what a T4 reports
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: capability)
    decided = loading.precision(model_type)
    assert (decided.device, decided.dtype, decided.mixed_precision) == ("cuda", dtype, mixed), gpu
    assert f"{capability[0]}.{capability[1]}" in decided.reason
    assert decided.trainer_flags() == {"bf16": mixed == "bf16", "fp16": mixed == "fp16", "use_cpu": False}
    assert loading.resolve_dtype("auto", model_type) is dtype  # "auto" asks the same decision
    assert loading.trainer_kwargs(get_profile("tiny").sft, "out", model_type=model_type)["fp16"] == (mixed == "fp16")


def test_trainer_kwargs_for_transformers_own_arguments_leave_out_trls_max_length(tmp_path):
    from transformers import TrainingArguments

    cfg = get_profile("tiny").sft
    assert loading.trainer_kwargs(cfg, tmp_path)["max_length"] == cfg.max_length  # TRL's configs read it
    args = TrainingArguments(**loading.trainer_kwargs(cfg, tmp_path, trl=False))  # transformers' own has no such field
    assert args.max_steps == cfg.max_steps and args.learning_rate == cfg.learning_rate


def test_model_type_reads_the_config_only(saved_tiny_model, tmp_path):
    _, path = saved_tiny_model
    assert loading.model_type(path) == "gpt2"
    assert loading.model_type(tmp_path / "nothing-here") is None


def test_load_model_gives_a_synced_tokenizer_and_an_eval_model(saved_tiny_model):
    model, path = saved_tiny_model
    loaded, tok = loading.load_model(path, "float32", device="cpu")
    assert not loaded.training and tok.padding_side == "left" and tok.chat_template
    assert loaded.config.pad_token_id == tok.pad_token_id == loaded.generation_config.pad_token_id
    assert loaded.generation_config.eos_token_id == tok.eos_token_id


def test_frozen_copy_and_dropout_off(make_tiny_model):
    model = make_tiny_model()
    model.transformer.drop.p = 0.1  # a model with dropout
    ref = loading.frozen_copy(model)
    assert ref is not model and not ref.training and not any(p.requires_grad for p in ref.parameters())
    assert all(p.requires_grad for p in model.parameters())  # the original is untouched
    loading.disable_dropout(model)
    assert all(m.p == 0.0 for m in model.modules() if isinstance(m, torch.nn.Dropout))
    assert not loading.is_peft(model)


def test_make_accelerator_follows_the_precision_decision():
    acc = loading.make_accelerator("auto", gradient_accumulation_steps=2)
    assert acc.mixed_precision == loading.precision().mixed_precision
    assert acc.gradient_accumulation_steps == 2
