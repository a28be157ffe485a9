"""Generation and log-probs, shared by every stage: SFT samples, reward data, PPO rollouts and evaluation.

* :func:`generate` -- prompts in, decoded responses out (response only, eos/padding removed, stripped).
* :func:`generate_ids` -- the same, plus the padded token tensors PPO needs (:class:`GenerationBatch`).
* :func:`lm_forward`, :func:`logprobs_from_logits`, :func:`entropy_from_logits` -- the log-probs of given
  responses (PPO's rollouts and update); :func:`sequence_kl` -- a policy's KL to a reference on its answers.

Each prompt is formatted with :func:`rlhf_helpers.core.chat.format_prompt` (or continued as it is, with
``cfg.chat_format=False``), prompts are batched
(``cfg.batch_size``) and left-padded, decoding uses the KV cache and stops at eos; greedy or sampled
(temperature / top-k / top-p) per :class:`~rlhf_helpers.core.config.GenerationConfig`. Sampling is seeded per call
(``cfg.seed``) inside a forked RNG, so the same call gives the same output and the global RNG is untouched.
The model's training mode and the tokenizer's padding side are restored afterwards. Works for plain, PEFT
and 4-bit models (anything with ``.generate``), decoder-only or encoder-decoder (T5: :func:`is_encoder_decoder`).

**Encoder-decoder models.** The formatted, left-padded prompt is the *encoder's* input and the answer is written
by the decoder, which starts from ``config.decoder_start_token_id`` (T5: the pad token): the response is the
generated sequence after that start token, not after the prompt. :func:`lm_forward` keeps its decoder-only
signature (query and response side by side, ``[B, Lq + T]``) and splits it there: the query goes to the encoder,
``[start] + response[:-1]`` to the decoder, and the decoder's logits and last hidden states are the ``T`` positions
that predict the response -- the same tensors PPO reads from a causal LM. The rest of PPO does not change.
"""

from __future__ import annotations

import contextlib
import inspect
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .chat import format_prompt
from .config import GenerationConfig

if TYPE_CHECKING:
    import numpy as np
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass
class GenerationBatch:
    """Rollouts of ``B`` prompts, as PPO wants them.

    * ``query_ids`` ``[B, Lq]`` -- formatted prompts, **left**-padded with the pad token;
      ``query_mask`` ``[B, Lq]`` 1 on real tokens.
    * ``response_ids`` ``[B, Lr]`` -- generated tokens, **right**-padded: every position after the first eos
      holds the pad token; ``response_mask`` ``[B, Lr]`` 1 on the generated tokens up to *and including* the
      first eos (a response without eos ran into ``max_new_tokens``: all its tokens are 1).
    * ``eos_found`` ``[B]`` bool -- the response stopped on eos (False: cut by ``max_new_tokens``).
    * ``responses`` -- decoded response texts (eos and padding removed, stripped); ``prompts`` -- the raw prompts.
    """

    query_ids: torch.Tensor
    query_mask: torch.Tensor
    response_ids: torch.Tensor
    response_mask: torch.Tensor
    eos_found: torch.Tensor
    responses: list[str]
    prompts: list[str]

    @property
    def input_ids(self) -> torch.Tensor:
        """``[B, Lq + Lr]`` query and response side by side."""
        import torch

        return torch.cat([self.query_ids, self.response_ids], dim=1)

    @property
    def attention_mask(self) -> torch.Tensor:
        """``[B, Lq + Lr]`` ``query_mask`` and ``response_mask`` side by side."""
        import torch

        return torch.cat([self.query_mask, self.response_mask], dim=1)

    def __len__(self) -> int:
        return len(self.responses)


def _hf_generation_config(tokenizer: PreTrainedTokenizerBase, cfg: GenerationConfig):
    """A complete ``transformers.GenerationConfig``: every decoding knob set explicitly, so a checkpoint's own
    ``generation_config.json`` (e.g. top_k=20, repetition_penalty) cannot change the course's decoding."""
    from transformers import GenerationConfig as HFGenerationConfig

    if cfg.max_new_tokens <= 0:
        raise ValueError(f"max_new_tokens must be positive, got {cfg.max_new_tokens}")
    kwargs: dict[str, Any] = dict(
        max_new_tokens=cfg.max_new_tokens,
        do_sample=cfg.do_sample,
        num_beams=1,
        repetition_penalty=1.0,
        use_cache=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    if cfg.do_sample:
        if cfg.temperature <= 0:
            raise ValueError(f"temperature must be > 0 when sampling, got {cfg.temperature}")
        if not 0 < cfg.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {cfg.top_p}")
        # top_k=0 switches top-k off (transformers' own default would be 50).
        kwargs.update(temperature=cfg.temperature, top_k=max(0, cfg.top_k), top_p=cfg.top_p)
    return HFGenerationConfig(**kwargs)


def _model_device(model: Any) -> torch.device:
    return next(model.parameters()).device


def is_encoder_decoder(model: Any) -> bool:
    """True for an encoder-decoder model (T5, BART; a PEFT wrapper passes its base's config on)."""
    return bool(getattr(getattr(model, "config", None), "is_encoder_decoder", False))


@contextlib.contextmanager
def _generation_mode(model: Any, tokenizer: PreTrainedTokenizerBase):
    """eval mode + left padding inside; the previous training mode and padding side restored after."""
    was_training, side = model.training, tokenizer.padding_side
    model.eval()
    tokenizer.padding_side = "left"
    try:
        yield
    finally:
        model.train(was_training)
        tokenizer.padding_side = side


def _rng_context(model: Any, seed: int):
    """Fork the RNG (CPU, and the model's GPU if any), then seed it: reproducible, global RNG untouched."""
    import torch

    device = _model_device(model)
    devices = [device.index or 0] if device.type == "cuda" else []

    @contextlib.contextmanager
    def ctx():
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield

    return ctx()


def _truncate_response(seq: torch.Tensor, eos_id: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Given generated tokens ``[B, L]``: (tokens with pad after the first eos, mask up to and including the
    first eos ``[B, L]``, eos-found ``[B]``)."""
    import torch

    is_eos = seq == eos_id
    found = is_eos.any(dim=1)
    length = seq.shape[1]
    first = torch.where(found, is_eos.int().argmax(dim=1), torch.full_like(found, length, dtype=torch.long))
    positions = torch.arange(length, device=seq.device).unsqueeze(0)
    mask = (positions <= first.unsqueeze(1)).long()
    return seq.masked_fill(mask == 0, pad_id), mask, found


def _decode(tokenizer: PreTrainedTokenizerBase, ids: torch.Tensor, mask: torch.Tensor) -> list[str]:
    eos = tokenizer.eos_token_id
    texts = []
    for row, m in zip(ids.tolist(), mask.tolist(), strict=True):
        kept = [t for t, keep in zip(row, m, strict=True) if keep and t != eos]
        texts.append(tokenizer.decode(kept, skip_special_tokens=True).strip())
    return texts


def _run(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    cfg: GenerationConfig,
    desc: str,
    progress: bool,
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Generate batch by batch; per batch: (query_ids, query_mask, response_ids, response_mask, eos_found)."""
    import torch
    from tqdm.auto import tqdm

    if isinstance(prompts, str):
        raise TypeError("prompts must be a list of strings, not a single string")
    prompts = list(prompts)
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise TypeError(f"prompts[{i}] is {type(p).__name__}, expected str")
    if tokenizer.pad_token_id is None or tokenizer.eos_token_id is None:
        raise ValueError("The tokenizer needs pad and eos tokens: call rlhf_helpers.core.chat.apply_template(tokenizer).")
    if cfg.batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {cfg.batch_size}")
    gen_config = _hf_generation_config(tokenizer, cfg)
    device = _model_device(model)
    enc_dec = is_encoder_decoder(model)
    # gpt2: n_positions. T5 has relative positions (no context limit), and the prompt does not share the
    # decoder's length budget anyway
    limit = None if enc_dec else getattr(getattr(model, "config", None), "max_position_embeddings", None)
    max_prompt = None if limit is None else limit - cfg.max_new_tokens
    if max_prompt is not None and max_prompt <= 0:
        raise ValueError(f"max_new_tokens={cfg.max_new_tokens} leaves no room for the prompt (model context {limit}).")
    texts = [format_prompt(tokenizer, p) for p in prompts] if cfg.chat_format else prompts
    starts = range(0, len(texts), cfg.batch_size)
    out = []
    with _generation_mode(model, tokenizer), _rng_context(model, cfg.seed), torch.no_grad():
        for start in tqdm(starts, desc=desc, disable=not progress, total=len(starts), leave=False):
            chunk = texts[start : start + cfg.batch_size]
            enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
            query_ids, query_mask = enc["input_ids"], enc["attention_mask"]
            if max_prompt is not None and query_ids.shape[1] > max_prompt:
                warnings.warn(
                    f"Prompts longer than {max_prompt} tokens keep only their last {max_prompt} tokens "
                    f"(model context {limit} - max_new_tokens {cfg.max_new_tokens}).",
                    stacklevel=3,
                )
                query_ids, query_mask = query_ids[:, -max_prompt:], query_mask[:, -max_prompt:]
                keep = query_mask.any(dim=0)  # drop columns that became padding only
                query_ids, query_mask = query_ids[:, keep], query_mask[:, keep]
            sequences = model.generate(
                input_ids=query_ids.to(device),
                attention_mask=query_mask.to(device),
                generation_config=gen_config,
            )
            # decoder-only: the sequences continue the query; encoder-decoder: they are the decoder's, after its
            # start token
            generated = sequences[:, 1 if enc_dec else query_ids.shape[1] :].cpu()
            response_ids, response_mask, found = _truncate_response(
                generated, tokenizer.eos_token_id, tokenizer.pad_token_id
            )
            out.append((query_ids, query_mask, response_ids, response_mask, found))
    return out


def generate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str],
             cfg: GenerationConfig | None = None, desc: str = "generating", progress: bool = True) -> list[str]:
    """Responses to raw ``prompts`` (formatted with the chat template here): decoded, eos/padding removed,
    stripped; one per prompt, in order (:func:`generate_ids`' texts; no prompts, no responses)."""
    return generate_ids(model, tokenizer, prompts, cfg, desc, progress).responses if len(prompts) else []


def _pad(tensors: list[torch.Tensor], value: int, side: str) -> torch.Tensor:
    import torch

    width = max(t.shape[1] for t in tensors)
    padded = []
    for t in tensors:
        fill = torch.full((t.shape[0], width - t.shape[1]), value, dtype=t.dtype)
        padded.append(torch.cat([fill, t] if side == "left" else [t, fill], dim=1))
    return torch.cat(padded, dim=0)


def generate_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str],
                 cfg: GenerationConfig | None = None, desc: str = "generating", progress: bool = True) -> GenerationBatch:
    """The responses to raw ``prompts`` with their padded token tensors (on CPU; see :class:`GenerationBatch`)."""
    import torch

    cfg = cfg or GenerationConfig()
    if not prompts:
        raise ValueError("generate_ids got no prompts")
    batches = _run(model, tokenizer, prompts, cfg, desc, progress)
    pad = tokenizer.pad_token_id
    query_ids = _pad([b[0] for b in batches], pad, "left")
    query_mask = _pad([b[1] for b in batches], 0, "left")
    response_ids = _pad([b[2] for b in batches], pad, "right")
    response_mask = _pad([b[3] for b in batches], 0, "right")
    return GenerationBatch(
        query_ids=query_ids,
        query_mask=query_mask,
        response_ids=response_ids,
        response_mask=response_mask,
        eos_found=torch.cat([b[4] for b in batches]),
        responses=_decode(tokenizer, response_ids, response_mask),
        prompts=list(prompts),
    )


# ------------------------------------------------------------------------------------------------ log-probs
def _supports_logits_to_keep(model: Any) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


def lm_forward(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_len: int, hidden: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Forward of a causal LM on ``[B, Lq + T]`` (left-padded query, then response); returns the logits that
    *predict* the ``T`` response tokens, ``[B, T, V]``, and (if ``hidden``) the last hidden states at the same
    positions, ``[B, T, H]``. Position ids skip the left padding, as in generation. An encoder-decoder model:
    :func:`_seq2seq_forward`."""
    if is_encoder_decoder(model):
        return _seq2seq_forward(model, input_ids, attention_mask, response_len, hidden)
    position_ids = (attention_mask.long().cumsum(1) - 1).clamp(min=0)
    kwargs: dict[str, Any] = dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                  use_cache=False, output_hidden_states=hidden)
    if _supports_logits_to_keep(model):  # the LM head only on the positions we need (saves a big matmul)
        kwargs["logits_to_keep"] = response_len + 1
    out = model(**kwargs)
    logits = out.logits[:, -(response_len + 1) : -1]
    h = out.hidden_states[-1][:, -(response_len + 1) : -1] if hidden else None
    return logits, h


def _seq2seq_forward(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_len: int, hidden: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`lm_forward` of an encoder-decoder model: the query ``input_ids[:, :-T]`` (left-padded, masked) is the
    encoder's input; the decoder reads ``[decoder_start] + response[:, :-1]``, so its ``T`` outputs predict the
    response tokens: logits ``[B, T, V]`` and (if ``hidden``) its last hidden states ``[B, T, H]``. No decoder
    mask: the decoder is causal and the response's padding comes after its eos, so no real position sees it."""
    import torch

    response = input_ids[:, -response_len:]
    start = torch.full_like(response[:, :1], model.config.decoder_start_token_id)
    out = model(input_ids=input_ids[:, :-response_len], attention_mask=attention_mask[:, :-response_len],
                decoder_input_ids=torch.cat([start, response[:, :-1]], dim=1), use_cache=False,
                output_hidden_states=hidden)
    return out.logits, out.decoder_hidden_states[-1] if hidden else None


def logprobs_from_logits(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``log softmax(logits)[ids]``: ``[B, T, V]`` and ``[B, T]`` -> ``[B, T]`` (float32, no full log-softmax copy)."""
    import torch

    logits = logits.float()
    return logits.gather(-1, ids.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of each position's next-token distribution, ``[B, T, V]`` -> ``[B, T]``."""
    import torch

    logits = logits.float()
    probs = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (probs * logits).sum(-1)


def sequence_kl(model: Any, ref_model: Any, batch: GenerationBatch, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Per-prompt KL of ``model`` to ``ref_model`` on the responses in ``batch`` (same tokenizer).

    Returns two float arrays ``[B]``: the k1 sum ``sum_t (log pi(y_t) - log pi_ref(y_t))`` and the exact-per-step
    sum ``sum_t KL(pi(.|x, y_<t) || pi_ref(.|x, y_<t))``, over response tokens (eos included, padding excluded).
    The exact KL needs each position's whole distribution, hence the full log-softmax here (PPO's update only
    needs the chosen tokens' log-probs: :func:`logprobs_from_logits`).
    """
    import torch

    k1_parts, full_parts = [], []
    device = next(model.parameters()).device
    T = batch.response_ids.shape[1]
    vocab = model.get_output_embeddings().weight.shape[0]
    step = max(1, min(batch_size, 2**26 // max(1, T * vocab)))  # bounds the [b, T, V] log-prob tensors (256 MB)
    with torch.no_grad():
        for i in range(0, len(batch), step):
            ids, att = batch.input_ids[i : i + step], batch.attention_mask[i : i + step]
            resp = batch.response_ids[i : i + step].to(device)
            mask = batch.response_mask[i : i + step].to(device).float()
            logp = []
            for m in (model, ref_model):
                m_device = next(m.parameters()).device
                logits, _ = lm_forward(m, ids.to(m_device), att.to(m_device), T)
                logp.append(torch.log_softmax(logits.float(), dim=-1).to(device))
            lp, lr = logp
            k1 = (lp.gather(-1, resp.unsqueeze(-1)) - lr.gather(-1, resp.unsqueeze(-1))).squeeze(-1) * mask
            full = (lp.exp() * (lp - lr)).sum(-1) * mask
            k1_parts.append(k1.sum(1).cpu())
            full_parts.append(full.sum(1).cpu())
    return torch.cat(k1_parts).double().numpy(), torch.cat(full_parts).double().numpy()
