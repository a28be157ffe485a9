"""The chat format of the course, the same for every model (tiny, gpt2, Qwen base), HH-RLHF style::

    "\\n\\nHuman: {prompt}\\n\\nAssistant:" + " {response}" + eos

:data:`CHAT_TEMPLATE` is the Jinja version with ``{% generation %}`` around ``" {response}" + eos`` so TRL's
``assistant_only_loss=True`` trains on the response *and* the eos (the model learns to stop).
:func:`format_prompt` / :func:`format_example` produce exactly what ``apply_chat_template`` renders.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
HUMAN_PREFIX = "\n\nHuman: "
ASSISTANT_PREFIX = "\n\nAssistant:"

# The one chat template of the course. The generation block holds " {response}" + eos, so TRL's
# `assistant_only_loss=True` (via `return_assistant_tokens_mask`) puts the response tokens and the eos in the
# loss. The string literals hold real newlines. Only user/assistant turns exist in HH-RLHF style.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}"
    "{{ '" + HUMAN_PREFIX + "' + message['content'] }}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{ '" + ASSISTANT_PREFIX + "' }}"
    "{%- generation -%}{{ ' ' + message['content'] + eos_token }}{%- endgeneration -%}"
    "{%- else -%}"
    "{{ raise_exception('Only user and assistant messages are supported (HH-RLHF format), got role '"
    " + message['role']) }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '" + ASSISTANT_PREFIX + "' }}{%- endif -%}"
)


def apply_template(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Put the course's chat template on ``tokenizer`` (in place, returned for chaining).

    Also sets a pad token where there is none (gpt2: pad = eos) and ``padding_side="left"`` (generation).
    """
    tokenizer.chat_template = CHAT_TEMPLATE
    if tokenizer.eos_token is None:
        raise ValueError(f"Tokenizer {tokenizer.name_or_path!r} has no eos token; the chat format needs one.")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def format_prompt(tokenizer: PreTrainedTokenizerBase, prompt: str) -> str:
    """``"\\n\\nHuman: {prompt}\\n\\nAssistant:"`` -- what the model sees before it answers.

    Equal to ``tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
    add_generation_prompt=True)``.
    """
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
    return HUMAN_PREFIX + prompt + ASSISTANT_PREFIX


def format_example(tokenizer: PreTrainedTokenizerBase, prompt: str, response: str) -> str:
    """A full training example: ``format_prompt(...) + " " + response + eos``.

    Equal to ``apply_chat_template`` of the user/assistant pair (``tokenize=False``).
    """
    if not isinstance(response, str):
        raise TypeError(f"response must be a str, got {type(response).__name__}")
    return format_prompt(tokenizer, prompt) + " " + response + tokenizer.eos_token


def messages(prompt: str, response: str | None = None) -> list[dict[str, str]]:
    """The conversational form of one example (TRL's "messages" format)."""
    out = [{"role": "user", "content": prompt}]
    if response is not None:
        out.append({"role": "assistant", "content": response})
    return out

