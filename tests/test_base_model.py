"""core.base_model: the tokenizer trained on the course data, the tiny GPT-2, pretraining, the cached base."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from rlhf_helpers.core import base_model, chat, loading
from rlhf_helpers.core.artifacts import REPO_ROOT, Paths
from rlhf_helpers.core.config import get_profile


# ------------------------------------------------------------------------------------------- tokenizer
def test_tokenizer_round_trip_and_special_tokens(tiny_tokenizer, sample_texts):
    tok = tiny_tokenizer
    for text in sample_texts[:5] + ["Unicode: 東京 🙂, tabs\tand\nnewlines", "Say {{ 'hi' }} and {% raw %}"]:
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
    again = base_model.train_tokenizer(sample_texts, vocab_size=512, model_max_length=128)
    assert again.get_vocab() == tiny_tokenizer.get_vocab()
    with pytest.raises(ValueError, match="no texts"):
        base_model.train_tokenizer([], vocab_size=512)
    with pytest.raises(ValueError, match="too small"):
        base_model.train_tokenizer(sample_texts, vocab_size=100)


def test_tokenizer_save_and_load_keep_template_specials_and_padding(tiny_tokenizer, tmp_path):
    tiny_tokenizer.save_pretrained(tmp_path)
    loaded = loading.load_tokenizer(tmp_path)
    assert loaded.chat_template == chat.CHAT_TEMPLATE
    assert (loaded.eos_token_id, loaded.pad_token_id) == (tiny_tokenizer.eos_token_id, tiny_tokenizer.pad_token_id)
    assert loaded.padding_side == "left"
    assert loaded("How do I use garlic?")["input_ids"] == tiny_tokenizer("How do I use garlic?")["input_ids"]


# ------------------------------------------------------------------------------------------ data files
def test_course_texts_reads_every_file_in_chat_format(course_data_dir):
    texts = list(base_model.course_texts(course_data_dir))
    counts = {n: sum(1 for _ in open(course_data_dir / f"{n}.jsonl")) for n in
              ("sft", "preferences", "heldout", "pretrain")}
    assert len(texts) == counts["sft"] + 2 * counts["preferences"] + counts["pretrain"]  # held-out left out
    with_heldout = list(base_model.course_texts(course_data_dir, include_heldout=True))
    assert len(with_heldout) == len(texts) + counts["heldout"]
    first_sft = json.loads(open(course_data_dir / "sft.jsonl").readline())
    assert texts[0] == f"\n\nHuman: {first_sft['prompt']}\n\nAssistant: {first_sft['response']}"
    assert sum(t.startswith("\n\nHuman: ") for t in texts) == len(texts) - counts["pretrain"]


def test_course_texts_errors_name_file_line_and_field(tmp_path):
    with pytest.raises(FileNotFoundError, match="sft.jsonl.*make data"):
        list(base_model.course_texts(tmp_path))
    (tmp_path / "sft.jsonl").write_text('{"prompt": "p", "response": "r"}\n{"prompt": "p"}\n')
    with pytest.raises(ValueError, match=r"sft\.jsonl:2: field 'response'"):
        list(base_model.course_texts(tmp_path))
    (tmp_path / "sft.jsonl").write_text('{"prompt": "p", "response": "r"}\n\n{oops\n')
    with pytest.raises(ValueError, match=r"sft\.jsonl:3: invalid JSON"):
        list(base_model.course_texts(tmp_path))


@pytest.mark.skipif(not (REPO_ROOT / "data" / "pretrain.jsonl").exists(), reason="course data not generated")
def test_tokenizer_on_the_real_course_data_tokenizes_the_scaffolding_compactly():
    tok = base_model.train_tokenizer(base_model.course_texts(REPO_ROOT / "data"), vocab_size=2048)
    assert len(tok) == 2048
    assert len(tok.tokenize("\n\nHuman:")) <= 4 and len(tok.tokenize("\n\nAssistant:")) <= 4
    pretrain = next(base_model.pretrain_texts(REPO_ROOT / "data"))
    assert len(tok.tokenize(pretrain)) < 0.4 * len(pretrain)  # real merges: < 0.4 tokens per character


# ------------------------------------------------------------------------------------ tiny model + pretraining
def _gpt2_param_count(vocab: int, cfg) -> int:
    d, L, P = cfg.n_embd, cfg.n_layer, cfg.n_positions
    per_layer = 2 * 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d)
    return vocab * d + P * d + L * per_layer + 2 * d  # lm_head tied to the token embedding


def test_tiny_model_size_matches_its_config(tiny_tokenizer, tiny_model_config, make_tiny_model):
    model = make_tiny_model()
    trainable, total = loading.parameter_counts(model)
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
    blocks = base_model.pack_texts(tiny_tokenizer, ["The garlic helps.", "The soil needs water."] * 20, 16)
    assert blocks.dim() == 2 and blocks.shape[1] == 16
    one = tiny_tokenizer("The garlic helps.", add_special_tokens=False)["input_ids"]
    assert blocks.flatten()[: len(one) + 1].tolist() == one + [tiny_tokenizer.eos_token_id]
    with pytest.raises(ValueError, match="fewer than one block"):
        base_model.pack_texts(tiny_tokenizer, ["hi"], 64)


def test_unseen_in_pretraining_counts_tokens_pretraining_never_had(tiny_tokenizer, course_data_dir, tmp_path):
    tok = chat.apply_template(tiny_tokenizer)
    sft = [json.loads(line) for line in (course_data_dir / "sft.jsonl").read_text().splitlines()][:20]
    prompts, responses = [r["prompt"] for r in sft], [r["response"] for r in sft]
    # the course's pretraining prose has no chat scaffolding: some prompt tokens were never pretrained
    real = base_model.unseen_in_pretraining(tok, course_data_dir, prompts, responses)
    assert 0 < real["prompt"] < 1 and 0 <= real["response"] < 1
    # pretraining on the very examples leaves no token unseen; an answer's new tokens are counted exactly
    examples = [chat.format_example(tok, p, r) for p, r in zip(prompts, responses, strict=True)]
    (tmp_path / "pretrain.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in examples))
    assert base_model.unseen_in_pretraining(tok, tmp_path, prompts, responses) == {"prompt": 0.0, "response": 0.0}
    marker = "東京"  # in no example
    answer = tok(chat.format_example(tok, prompts[0], marker), add_special_tokens=False)["input_ids"]
    head = tok(chat.format_prompt(tok, prompts[0]), add_special_tokens=False)["input_ids"]
    seen = {tok.eos_token_id, *(i for row in tok(examples, add_special_tokens=False)["input_ids"] for i in row)}
    new = sum(i not in seen for i in answer[len(head):])  # the marker's tokens, not the answer's eos
    shares = base_model.unseen_in_pretraining(tok, tmp_path, prompts[:1], [marker])
    assert new > 0 and shares == {"prompt": 0.0, "response": new / (len(answer) - len(head))}


@pytest.mark.usefixtures("one_torch_thread")  # on 2 threads, two runs in one process once differed from step 4 by
# 1e-6 (a fresh clone's test run): the order of multi-threaded float sums is not fixed; on one thread it is
def test_pretraining_lowers_the_loss_and_is_deterministic(tiny_tokenizer, tiny_model_config, make_tiny_model):
    texts = ["The fresh garlic helps the soup when you add the salt."] * 200
    cfg = dataclasses.replace(tiny_model_config, pretrain_steps=30)
    runs = []
    for _ in range(2):
        model = make_tiny_model()
        runs.append(base_model.pretrain(model, tiny_tokenizer, texts, cfg, progress=False, seed=3))
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
    real_pretrain = base_model.pretrain
    monkeypatch.setattr(base_model, "pretrain", lambda *a, **k: calls.append(1) or real_pretrain(*a, **k))

    path = base_model.build_tiny_base(profile, progress=False)
    assert path == profile.paths.checkpoint("base") and calls == [1]
    info = base_model.read_base_info(path)
    assert len(info["losses"]) == 4 and info["model_config"] == dataclasses.asdict(cfg)
    assert info["parameters"] > 0 and info["build_seconds"] >= info["pretrain_seconds"] > 0
    assert not list(path.parent.glob(".base.*"))  # no temporary or .old directory left behind (artifacts.atomic_dir)

    assert base_model.build_tiny_base(profile, progress=False) == path and calls == [1]  # cached: not rebuilt

    model, tok = base_model.load_base(profile)
    assert not model.training and tok.chat_template == chat.CHAT_TEMPLATE and tok.padding_side == "left"
    assert loading.parameter_counts(model)[1] == info["parameters"]
    assert model.config.pad_token_id == tok.pad_token_id

    changed = dataclasses.replace(profile, model=dataclasses.replace(cfg, pretrain_steps=3))
    base_model.build_tiny_base(changed, progress=False)  # another ModelConfig: rebuilt
    assert calls == [1, 1] and len(base_model.read_base_info(path)["losses"]) == 3


def test_build_tiny_base_refuses_hub_profiles():
    with pytest.raises(ValueError, match="tiny profile"):
        base_model.build_tiny_base(get_profile("colab"))


