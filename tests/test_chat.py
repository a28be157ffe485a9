"""core.chat: the course's chat template and the format helpers that must render exactly what it renders."""

from __future__ import annotations

import pytest

from rlhf_helpers.core import chat

PROMPTS = ["How do I use garlic?", "Say {{ 'hi' }} and {% raw %}", "Line one\nline two: \"quoted\"", "café 🙂"]
RESPONSES = ["Crush it and add it late.", "hi", "", "  spaced  "]


@pytest.mark.parametrize("prompt,response", list(zip(PROMPTS, RESPONSES, strict=True)))
def test_chat_template_equals_format_helpers(tiny_tokenizer, prompt, response):
    tok = tiny_tokenizer
    rendered_prompt = tok.apply_chat_template(chat.messages(prompt), tokenize=False, add_generation_prompt=True)
    rendered_full = tok.apply_chat_template(chat.messages(prompt, response), tokenize=False)
    assert rendered_prompt == chat.format_prompt(tok, prompt) == f"\n\nHuman: {prompt}\n\nAssistant:"
    assert rendered_full == chat.format_example(tok, prompt, response)
    assert rendered_full == f"\n\nHuman: {prompt}\n\nAssistant: {response}<|endoftext|>"


@pytest.mark.parametrize("prompt,response", list(zip(PROMPTS, RESPONSES, strict=True)))
def test_assistant_mask_covers_exactly_response_and_eos(tiny_tokenizer, prompt, response):
    tok = tiny_tokenizer
    out = tok.apply_chat_template(chat.messages(prompt, response), return_assistant_tokens_mask=True,
                                  return_dict=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    prompt_ids = tok(chat.format_prompt(tok, prompt), add_special_tokens=False)["input_ids"]
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
    assert chat.apply_template(tok) is tok
    assert tok.pad_token == tok.eos_token and tok.padding_side == "left"
    assert tok.apply_chat_template(chat.messages("a", "b"), tokenize=False) == chat.format_example(tok, "a", "b")


