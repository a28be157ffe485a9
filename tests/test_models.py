"""rlhf_helpers.models: tokenizer, chat template, tiny model + pretraining, base cache, loading, 4-bit, LoRA."""

from __future__ import annotations

import dataclasses
import json
import warnings

import pytest
import torch

from rlhf_helpers import models
from rlhf_helpers.config import REPO_ROOT, Paths, QLoRAConfig, get_profile

PROMPTS = ["How do I use garlic?", "Say {{ 'hi' }} and {% raw %}", "Line one\nline two: \"quoted\"", "café 🙂"]
RESPONSES = ["Crush it and add it late.", "hi", "", "  spaced  "]


# ------------------------------------------------------------------------------------------- tokenizer
def test_tokenizer_round_trip_and_special_tokens(tiny_tokenizer, sample_texts):
    tok = tiny_tokenizer
    for text in sample_texts[:5] + ["Unicode: 東京 🙂, tabs\tand\nnewlines", PROMPTS[1]]:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text
    assert tok.eos_token == tok.bos_token == tok.unk_token == "<|endoftext|>"
    assert tok.pad_token == "<|pad|>" and tok.pad_token_id != tok.eos_token_id
    assert tok("<|endoftext|>", add_special_tokens=False)["input_ids"] == [tok.eos_token_id]
    assert tok("hello", add_special_tokens=True)["input_ids"] == tok("hello", add_special_tokens=False)["input_ids"]
    assert 258 < len(tok) <= 512  # 256 bytes + 2 specials + merges, capped by vocab_size
    assert tok.padding_side == "left"
    # the chat scaffolding is made of learned multi-character tokens
    assert "Human" in tok.get_vocab() and "Assistant" in tok.get_vocab()


def test_tokenizer_training_is_deterministic_and_checks_its_input(sample_texts, tiny_tokenizer):
    again = models.train_tokenizer(sample_texts, vocab_size=512, model_max_length=128)
    assert again.get_vocab() == tiny_tokenizer.get_vocab()
    with pytest.raises(ValueError, match="no texts"):
        models.train_tokenizer([], vocab_size=512)
    with pytest.raises(ValueError, match="too small"):
        models.train_tokenizer(sample_texts, vocab_size=100)


def test_tokenizer_save_and_load_keep_template_specials_and_padding(tiny_tokenizer, tmp_path):
    tiny_tokenizer.save_pretrained(tmp_path)
    loaded = models.load_tokenizer(tmp_path)
    assert loaded.chat_template == models.CHAT_TEMPLATE
    assert (loaded.eos_token_id, loaded.pad_token_id) == (tiny_tokenizer.eos_token_id, tiny_tokenizer.pad_token_id)
    assert loaded.padding_side == "left"
    assert loaded(PROMPTS[0])["input_ids"] == tiny_tokenizer(PROMPTS[0])["input_ids"]


# --------------------------------------------------------------------------------------- chat template
@pytest.mark.parametrize("prompt,response", list(zip(PROMPTS, RESPONSES, strict=True)))
def test_chat_template_equals_format_helpers(tiny_tokenizer, prompt, response):
    tok = tiny_tokenizer
    rendered_prompt = tok.apply_chat_template(models.messages(prompt), tokenize=False, add_generation_prompt=True)
    rendered_full = tok.apply_chat_template(models.messages(prompt, response), tokenize=False)
    assert rendered_prompt == models.format_prompt(tok, prompt) == f"\n\nHuman: {prompt}\n\nAssistant:"
    assert rendered_full == models.format_example(tok, prompt, response)
    assert rendered_full == f"\n\nHuman: {prompt}\n\nAssistant: {response}<|endoftext|>"


@pytest.mark.parametrize("prompt,response", list(zip(PROMPTS, RESPONSES, strict=True)))
def test_assistant_mask_covers_exactly_response_and_eos(tiny_tokenizer, prompt, response):
    tok = tiny_tokenizer
    out = tok.apply_chat_template(models.messages(prompt, response), return_assistant_tokens_mask=True,
                                  return_dict=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    prompt_ids = tok(models.format_prompt(tok, prompt), add_special_tokens=False)["input_ids"]
    # the prompt tokens are a prefix of the full example (what TRL's prompt-completion path needs) ...
    assert ids[: len(prompt_ids)] == prompt_ids
    # ... and the mask is 0 on them and 1 on everything after: " " + response + eos
    assert mask == [0] * len(prompt_ids) + [1] * (len(ids) - len(prompt_ids))
    assert tok.decode([i for i, m in zip(ids, mask, strict=True) if m]) == " " + response + tok.eos_token
    assert ids[-1] == tok.eos_token_id


def test_trl_accepts_the_template_for_assistant_only_loss(tiny_tokenizer):
    from trl.chat_template_utils import has_generation_markers, is_chat_template_stop_token_trained

    assert has_generation_markers(tiny_tokenizer.chat_template)
    assert is_chat_template_stop_token_trained(tiny_tokenizer)  # eos is inside the assistant mask
    with pytest.raises(Exception, match="Only user and assistant"):
        tiny_tokenizer.apply_chat_template([{"role": "system", "content": "x"}], tokenize=False)


def test_apply_template_sets_pad_and_template_on_a_foreign_tokenizer(sample_texts):
    """A gpt2-like tokenizer (eos only, no pad, right padding) gets pad = eos, left padding, the template."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers, trainers
    from tokenizers import models as tok_models
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(tok_models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator(sample_texts, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>", padding_side="right")
    assert tok.pad_token is None and tok.chat_template is None
    assert models.apply_template(tok) is tok
    assert tok.pad_token == tok.eos_token and tok.padding_side == "left"
    assert tok.apply_chat_template(models.messages("a", "b"), tokenize=False) == models.format_example(tok, "a", "b")


# ------------------------------------------------------------------------------------------ data files
def test_course_texts_reads_every_file_in_chat_format(course_data_dir):
    texts = list(models.course_texts(course_data_dir))
    counts = {n: sum(1 for _ in open(course_data_dir / f"{n}.jsonl")) for n in
              ("sft", "preferences", "heldout", "pretrain")}
    assert len(texts) == counts["sft"] + 2 * counts["preferences"] + counts["pretrain"]  # held-out left out
    with_heldout = list(models.course_texts(course_data_dir, include_heldout=True))
    assert len(with_heldout) == len(texts) + counts["heldout"]
    first_sft = json.loads(open(course_data_dir / "sft.jsonl").readline())
    assert texts[0] == f"\n\nHuman: {first_sft['prompt']}\n\nAssistant: {first_sft['response']}"
    assert sum(t.startswith("\n\nHuman: ") for t in texts) == len(texts) - counts["pretrain"]


def test_course_texts_errors_name_file_line_and_field(tmp_path):
    with pytest.raises(FileNotFoundError, match="sft.jsonl.*make data"):
        list(models.course_texts(tmp_path))
    (tmp_path / "sft.jsonl").write_text('{"prompt": "p", "response": "r"}\n{"prompt": "p"}\n')
    with pytest.raises(ValueError, match=r"sft\.jsonl:2: field 'response'"):
        list(models.course_texts(tmp_path))
    (tmp_path / "sft.jsonl").write_text('{"prompt": "p", "response": "r"}\n\n{oops\n')
    with pytest.raises(ValueError, match=r"sft\.jsonl:3: invalid JSON"):
        list(models.course_texts(tmp_path))


@pytest.mark.skipif(not (REPO_ROOT / "data" / "pretrain.jsonl").exists(), reason="course data not generated")
def test_tokenizer_on_the_real_course_data_tokenizes_the_scaffolding_compactly():
    tok = models.train_tokenizer(models.course_texts(REPO_ROOT / "data"), vocab_size=2048)
    assert len(tok) == 2048
    assert len(tok.tokenize("\n\nHuman:")) <= 4 and len(tok.tokenize("\n\nAssistant:")) <= 4
    pretrain = next(models.pretrain_texts(REPO_ROOT / "data"))
    assert len(tok.tokenize(pretrain)) < 0.4 * len(pretrain)  # real merges: < 0.4 tokens per character


# ------------------------------------------------------------------------------------ tiny model + pretraining
def _gpt2_param_count(vocab: int, cfg) -> int:
    d, L, P = cfg.n_embd, cfg.n_layer, cfg.n_positions
    per_layer = 2 * 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d)
    return vocab * d + P * d + L * per_layer + 2 * d  # lm_head tied to the token embedding


def test_tiny_model_size_matches_its_config(tiny_tokenizer, tiny_model_config, make_tiny_model):
    model = make_tiny_model()
    trainable, total = models.count_parameters(model)
    assert trainable == total == _gpt2_param_count(len(tiny_tokenizer), tiny_model_config)
    assert model.lm_head.weight is model.transformer.wte.weight
    assert model.config.eos_token_id == tiny_tokenizer.eos_token_id
    assert model.config.pad_token_id == tiny_tokenizer.pad_token_id
    # the course's default size: ~1.1M parameters with the full 2048-token vocabulary
    default = get_profile("tiny").model
    assert 0.8e6 < _gpt2_param_count(default.vocab_size, default) < 3e6


def test_tiny_model_is_seeded(make_tiny_model):
    a, b, c = make_tiny_model(seed=0), make_tiny_model(seed=0), make_tiny_model(seed=1)
    assert torch.equal(a.transformer.h[0].attn.c_attn.weight, b.transformer.h[0].attn.c_attn.weight)
    assert not torch.equal(a.transformer.h[0].attn.c_attn.weight, c.transformer.h[0].attn.c_attn.weight)


def test_pack_texts_joins_with_eos_and_cuts_blocks(tiny_tokenizer):
    blocks = models.pack_texts(tiny_tokenizer, ["The garlic helps.", "The soil needs water."] * 20, 16)
    assert blocks.dim() == 2 and blocks.shape[1] == 16
    one = tiny_tokenizer("The garlic helps.", add_special_tokens=False)["input_ids"]
    assert blocks.flatten()[: len(one) + 1].tolist() == one + [tiny_tokenizer.eos_token_id]
    with pytest.raises(ValueError, match="fewer than one block"):
        models.pack_texts(tiny_tokenizer, ["hi"], 64)


def test_pretraining_lowers_the_loss_and_is_deterministic(tiny_tokenizer, tiny_model_config, make_tiny_model):
    texts = ["The fresh garlic helps the soup when you add the salt."] * 200
    cfg = dataclasses.replace(tiny_model_config, pretrain_steps=30)
    runs = []
    for _ in range(2):
        model = make_tiny_model()
        runs.append(models.pretrain(model, tiny_tokenizer, texts, cfg, progress=False, seed=3))
    hist = runs[0]
    assert len(hist["losses"]) == 30 and hist["tokens"] == 30 * cfg.pretrain_batch_size * cfg.pretrain_seq_len
    assert hist["losses"][0] > 5.0  # ~ln(vocab) at the start
    assert hist["final_loss"] < 0.3 * hist["losses"][0]
    assert runs[1]["losses"] == hist["losses"]
    assert not model.training  # restored (the factory returns eval-mode models)


def test_build_tiny_base_builds_once_and_loads(course_data_dir, tiny_model_config, tmp_path, monkeypatch):
    cfg = dataclasses.replace(tiny_model_config, pretrain_steps=4)
    profile = get_profile("tiny", model=cfg, paths=Paths(root=tmp_path / "out", data_dir=course_data_dir))
    calls = []
    real_pretrain = models.pretrain
    monkeypatch.setattr(models, "pretrain", lambda *a, **k: calls.append(1) or real_pretrain(*a, **k))

    path = models.build_tiny_base(profile, progress=False)
    assert path == profile.paths.checkpoint("base") and calls == [1]
    info = models.read_base_info(path)
    assert len(info["losses"]) == 4 and info["model_config"] == dataclasses.asdict(cfg)
    assert info["parameters"] > 0 and info["build_seconds"] >= info["pretrain_seconds"] > 0
    assert not list(path.parent.glob(".base.*"))  # no temporary or .old directory left behind (data.atomic_dir)

    assert models.build_tiny_base(profile, progress=False) == path and calls == [1]  # cached: not rebuilt

    model, tok = models.load_base(profile)
    assert not model.training and tok.chat_template == models.CHAT_TEMPLATE and tok.padding_side == "left"
    assert models.count_parameters(model)[1] == info["parameters"]
    assert model.config.pad_token_id == tok.pad_token_id

    changed = dataclasses.replace(profile, model=dataclasses.replace(cfg, pretrain_steps=3))
    models.build_tiny_base(changed, progress=False)  # another ModelConfig: rebuilt
    assert calls == [1, 1] and len(models.read_base_info(path)["losses"]) == 3


def test_build_tiny_base_refuses_hub_profiles():
    with pytest.raises(ValueError, match="tiny profile"):
        models.build_tiny_base(get_profile("colab"))


# -------------------------------------------------------------------------------------------- loading
def test_resolve_dtype():
    if not torch.cuda.is_available():
        assert models.resolve_dtype("auto") is torch.float32
    assert models.resolve_dtype("bf16") is torch.bfloat16 and models.resolve_dtype(torch.float16) is torch.float16
    assert models.resolve_dtype(get_profile("tiny").model) is models.resolve_dtype("auto")
    with pytest.raises(ValueError, match="Unknown dtype 'int3'"):
        models.resolve_dtype("int3")


@pytest.fixture
def saved_tiny_model(make_tiny_model, tiny_tokenizer, tmp_path):
    model = make_tiny_model()
    model.save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    return model, tmp_path


def test_load_causal_lm_round_trip(saved_tiny_model):
    model, path = saved_tiny_model
    loaded = models.load_causal_lm(path, "float32", device="cpu")
    x = torch.randint(0, model.config.vocab_size, (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).logits, model(x).logits)


def test_load_4bit_quantizes_linear_layers_on_cpu(saved_tiny_model):
    import bitsandbytes as bnb

    model, path = saved_tiny_model
    q = models.load_4bit(path, QLoRAConfig(), device="cpu")
    assert getattr(q, "is_loaded_in_4bit", False)
    n4 = sum(isinstance(m, bnb.nn.Linear4bit) for m in q.modules())
    assert n4 == 4 * model.config.n_layer  # GPT-2's Conv1D c_attn, c_proj, c_fc, mlp.c_proj per block
    assert q.transformer.h[0].attn.c_attn.weight.quant_state.quant_type == "nf4"
    assert models.count_parameters(q)[1] == models.count_parameters(model)[1]  # logical sizes
    x = torch.randint(0, model.config.vocab_size, (2, 12))
    with torch.no_grad():
        a, b = model(x).logits.flatten(), q(x).logits.flatten()
    assert torch.corrcoef(torch.stack([a, b]))[0, 1] > 0.8  # quantized, not garbage

    # QLoRA: LoRA on top trains, even after an eval-mode forward (bitsandbytes' CPU repacking is off)
    from peft import get_peft_model

    peft_model = get_peft_model(q, models.lora_config(QLoRAConfig(lora_r=4)))
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

    monkeypatch.setattr(models, "_import_bitsandbytes", broken)
    plain = models.load_4bit(path, QLoRAConfig(), device="cpu")
    assert "WARNING" in capsys.readouterr().out
    assert not getattr(plain, "is_loaded_in_4bit", False)
    assert not any(isinstance(m, bnb.nn.Linear4bit) for m in plain.modules())
    assert models.count_parameters(plain) == models.count_parameters(model)
    # load_in_4bit=False (the cpu profile) loads the plain model without a warning
    models.load_4bit(path, QLoRAConfig(load_in_4bit=False), device="cpu")
    assert capsys.readouterr().out == ""


def test_lora_all_linear_targets_gpt2_conv1d_layers_but_not_the_head(make_tiny_model):
    from peft import get_peft_model

    model = make_tiny_model()
    total_before = models.count_parameters(model)[1]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        peft_model = get_peft_model(model, models.lora_config(QLoRAConfig(lora_r=4, lora_alpha=8), model))
    assert not [w for w in caught if "fan_in_fan_out" in str(w.message)]  # set up front, no peft warning
    targeted = {n.rsplit(".", 1)[0].split("transformer.")[-1] for n, _ in peft_model.named_modules()
                if n.endswith("lora_A")}
    assert {"h.0.attn.c_attn", "h.0.attn.c_proj", "h.0.mlp.c_fc", "h.0.mlp.c_proj"} <= targeted
    assert not any("lm_head" in t for t in targeted)
    trainable, total = models.count_parameters(peft_model)
    d, L, r = model.config.n_embd, model.config.n_layer, 4
    expected_lora = L * r * ((d + 3 * d) + (d + d) + (d + 4 * d) + (4 * d + d))
    assert trainable == expected_lora and total == total_before + expected_lora
