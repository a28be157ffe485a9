"""core.generation: EOS, max_new_tokens, left padding, seeding, restored state, GenerationBatch; log-probs and KL."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from rlhf_helpers.core.chat import format_prompt
from rlhf_helpers.core.config import GenerationConfig
from rlhf_helpers.core.generation import generate, generate_ids

PROMPTS = ["Hi", "Tell me about the moon.", "How do I use garlic for cooking? Please explain in detail, with steps."]
GREEDY = GenerationConfig(max_new_tokens=10, batch_size=8)


@pytest.fixture
def sharp_model(make_tiny_model):
    """An untrained model with large random weights: confident, context-dependent, (almost) never eos."""
    model = make_tiny_model(seed=0)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return model


class force_eos_at:
    """Make row ``i`` of a batch emit eos exactly at generation step ``steps[i]`` (1-based), never before.

    Hooks: the transformer body sees the prefill (many input tokens: step 1) and then one token per cached
    step; the output head's logits are overwritten accordingly. A context manager.
    """

    def __init__(self, model, tokenizer, steps: list[int]):
        self.model, self.eos, self.steps, self.step = model, tokenizer.eos_token_id, steps, 0

    def _count(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.step = 1 if ids.shape[1] > 1 else self.step + 1

    def _force(self, module, args, logits):
        logits = logits.clone()
        for row, k in enumerate(self.steps):
            if self.step == k:
                logits[row, -1, :] = -1e9
                logits[row, -1, self.eos] = 1e9
            else:
                logits[row, -1, self.eos] = -1e9
        return logits

    def __enter__(self):
        self.handles = [self.model.transformer.register_forward_pre_hook(self._count, with_kwargs=True),
                        self.model.lm_head.register_forward_hook(self._force)]
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()


def test_stops_at_eos_and_pads_after_it(sharp_model, tiny_tokenizer):
    tok, steps = tiny_tokenizer, [3, 6, 1]
    with force_eos_at(sharp_model, tok, steps):
        batch = generate_ids(sharp_model, tok, PROMPTS, GenerationConfig(max_new_tokens=20), progress=False)
        texts = generate(sharp_model, tok, PROMPTS, GenerationConfig(max_new_tokens=20), progress=False)
    assert batch.response_ids.shape[1] == max(steps)  # generation ended when the last row emitted eos
    assert batch.response_mask.sum(dim=1).tolist() == steps  # tokens up to and including eos
    for row, k in enumerate(steps):
        assert batch.response_ids[row, k - 1] == tok.eos_token_id
        assert (batch.response_ids[row, k:] == tok.pad_token_id).all()
        assert (batch.response_ids[row, : k - 1] != tok.eos_token_id).all()
    assert batch.eos_found.all()
    assert texts == batch.responses and texts[2] == ""  # eos at step 1: empty response
    assert all("<|endoftext|>" not in t and "<|pad|>" not in t for t in texts)
    ids_before_eos = batch.response_ids[0, : steps[0] - 1].tolist()
    assert texts[0] == tok.decode(ids_before_eos).strip()


def test_honours_max_new_tokens(sharp_model, tiny_tokenizer):
    with force_eos_at(sharp_model, tiny_tokenizer, [50, 50, 50]):  # later than the limit
        batch = generate_ids(sharp_model, tiny_tokenizer, PROMPTS, GenerationConfig(max_new_tokens=7),
                             progress=False)
    assert batch.response_ids.shape == (3, 7)
    assert batch.response_mask.all() and not batch.eos_found.any()
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(sharp_model, tiny_tokenizer, PROMPTS, GenerationConfig(max_new_tokens=0), progress=False)


def test_left_padding_gives_the_same_greedy_output_alone_or_batched(sharp_model, tiny_tokenizer):
    alone = [generate_ids(sharp_model, tiny_tokenizer, [p], GREEDY, progress=False).response_ids[0] for p in PROMPTS]
    batch = generate_ids(sharp_model, tiny_tokenizer, PROMPTS, GREEDY, progress=False)
    for row, ids in enumerate(alone):
        assert batch.response_ids[row, : len(ids)].tolist() == ids.tolist()
    assert len({tuple(ids.tolist()) for ids in alone}) == 3  # the output depends on the prompt
    # batch_size splits the prompts into several generate calls: same responses, re-padded tensors
    split = generate_ids(sharp_model, tiny_tokenizer, PROMPTS, dataclasses.replace(GREEDY, batch_size=2),
                         progress=False)
    assert split.responses == batch.responses
    assert torch.equal(split.query_ids, batch.query_ids) and torch.equal(split.response_ids, batch.response_ids)


def test_seeded_sampling_is_reproducible_and_leaves_the_global_rng_alone(sharp_model, tiny_tokenizer):
    sample = GenerationConfig(max_new_tokens=12, do_sample=True, temperature=1.0, top_k=0, top_p=1.0, seed=7)
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = generate(sharp_model, tiny_tokenizer, PROMPTS * 2, sample, progress=False)
    assert torch.equal(torch.rand(3), expected_next)  # global RNG untouched
    assert generate(sharp_model, tiny_tokenizer, PROMPTS * 2, sample, progress=False) == first
    other = generate(sharp_model, tiny_tokenizer, PROMPTS * 2, dataclasses.replace(sample, seed=8), progress=False)
    assert other != first
    greedy = generate(sharp_model, tiny_tokenizer, PROMPTS * 2, GREEDY, progress=False)
    assert first != greedy[: len(first)]  # it really sampled
    assert greedy[:3] == greedy[3:]  # greedy: the same prompt gives the same response


def test_top_k_one_sampling_equals_greedy(sharp_model, tiny_tokenizer):
    top1 = GenerationConfig(max_new_tokens=10, do_sample=True, top_k=1, seed=3)
    assert generate(sharp_model, tiny_tokenizer, PROMPTS, top1, progress=False) == \
        generate(sharp_model, tiny_tokenizer, PROMPTS, GREEDY, progress=False)


def test_restores_training_mode_and_padding_side(sharp_model, tiny_tokenizer):
    sharp_model.train()
    tiny_tokenizer.padding_side = "right"
    try:
        generate(sharp_model, tiny_tokenizer, PROMPTS[:1], GREEDY, progress=False)
        assert sharp_model.training and tiny_tokenizer.padding_side == "right"
        sharp_model.eval()
        generate_ids(sharp_model, tiny_tokenizer, PROMPTS[:1], GREEDY, progress=False)
        assert not sharp_model.training and tiny_tokenizer.padding_side == "right"
    finally:
        tiny_tokenizer.padding_side = "left"


def test_generation_batch_tensors_are_consistent(sharp_model, tiny_tokenizer):
    tok = tiny_tokenizer
    with force_eos_at(sharp_model, tok, [4, 9, 2]):
        batch = generate_ids(sharp_model, tok, PROMPTS, GREEDY, progress=False)
    B = len(PROMPTS)
    assert batch.query_ids.shape == batch.query_mask.shape and batch.query_ids.shape[0] == B
    assert batch.response_ids.shape == batch.response_mask.shape and batch.response_ids.shape[0] == B
    assert torch.equal(batch.query_mask.bool(), batch.query_ids != tok.pad_token_id)  # pad != eos here
    assert batch.query_mask[:, -1].all()  # left padding: every row ends with a real token
    for row, prompt in enumerate(PROMPTS):
        real = batch.query_ids[row][batch.query_mask[row].bool()].tolist()
        assert tok.decode(real) == format_prompt(tok, prompt)
        m = batch.response_mask[row]
        n = int(m.sum())
        assert m[:n].all() and not m[n:].any()  # right padding: contiguous from the start
        assert (batch.response_ids[row][~m.bool()] == tok.pad_token_id).all()
    assert batch.input_ids.shape == batch.attention_mask.shape == (B, batch.query_ids.shape[1] + 9)
    assert len(batch) == B and batch.prompts == PROMPTS


def test_peft_wrapped_model_generates_like_its_base(sharp_model, tiny_tokenizer):
    """A fresh LoRA wrap (lora_B = 0) must not change greedy outputs; PeftModel.generate takes our kwargs."""
    from peft import get_peft_model

    from rlhf_helpers.core.loading import lora_config

    base = generate(sharp_model, tiny_tokenizer, PROMPTS, GREEDY, progress=False)
    peft_model = get_peft_model(sharp_model, lora_config(4, 32, 0.05, model=sharp_model))
    assert generate(peft_model, tiny_tokenizer, PROMPTS, GREEDY, progress=False) == base


def test_bad_inputs_and_long_prompts(sharp_model, tiny_tokenizer):
    with pytest.raises(TypeError, match="list of strings"):
        generate(sharp_model, tiny_tokenizer, "Hi", GREEDY, progress=False)
    with pytest.raises(TypeError, match=r"prompts\[1\]"):
        generate(sharp_model, tiny_tokenizer, ["Hi", 3], GREEDY, progress=False)
    assert generate(sharp_model, tiny_tokenizer, [], GREEDY, progress=False) == []
    long_prompt = "garlic " * 300  # longer than the 128-position context
    with pytest.warns(UserWarning, match="keep only their last"):
        batch = generate_ids(sharp_model, tiny_tokenizer, [long_prompt, "Hi"], GREEDY, progress=False)
    assert batch.query_ids.shape[1] + GREEDY.max_new_tokens <= sharp_model.config.n_positions
