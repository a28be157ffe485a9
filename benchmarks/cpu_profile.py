"""Benchmark: what the ``cpu`` profile costs on this machine, from per-step times of models of its real shapes.

No machine of this project reaches the Hub, so the ``cpu`` profile's models cannot be downloaded here. Their
*shapes* can be built from a config (random weights cost as much compute as trained ones): ``distilgpt2`` (GPT-2,
6 layers of 768, vocabulary 50,257) and the judge ``OpenAssistant/reward-model-deberta-v3-base`` (DeBERTa-v2,
12 layers of 768, vocabulary 128,100). This script times one step of each stage with the profile's batch sizes and
lengths, multiplies by the profile's step counts, and prints an estimate per stage (loading, plots, notebook 07
and the judge's scoring of PPO's rollouts are not in it):

    .venv/bin/python benchmarks/cpu_profile.py              # torch's default threads (all cores)
    .venv/bin/python benchmarks/cpu_profile.py --threads 2

Sequences are ``--tokens`` long (default 192: prompt + answer of a Dahoas pair, an assumption: the real lengths
need the real tokenizer). The table lands in ``benchmarks/cpu_profile.md``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from rlhf_helpers.core.config import get_profile

REPORT = Path(__file__).resolve().parent / "cpu_profile.md"


def timed(step: Callable[[], object], repeats: int) -> float:
    """Median wall seconds of ``step`` over ``repeats`` calls, after one warm-up call."""
    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def distilgpt2(classifier: bool = False) -> torch.nn.Module:
    """A random model of distilgpt2's shape (a causal LM, or with a one-output score head as the reward model)."""
    from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel

    config = GPT2Config(n_layer=6, n_embd=768, n_head=12, vocab_size=50257, num_labels=1, pad_token_id=50256)
    return (GPT2ForSequenceClassification if classifier else GPT2LMHeadModel)(config)


def train_step(model: torch.nn.Module, batch: int, tokens: int, classifier: bool = False) -> Callable[[], None]:
    """One AdamW step on ``batch`` random sequences of ``tokens`` tokens: ids ``[batch, tokens]``."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5)
    ids = torch.randint(0, 50000, (batch, tokens))
    model.train()

    def step() -> None:
        out = model(input_ids=ids) if classifier else model(input_ids=ids, labels=ids)
        loss = out.logits.float().pow(2).mean() if classifier else out.loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def lora_step(batch: int, tokens: int, four_bit: bool) -> Callable[[], None]:
    """One step of LoRA adapters (r 16, all linear layers) on distilgpt2's shape, the base in 4-bit when asked."""
    from peft import LoraConfig, get_peft_model

    model = distilgpt2()
    if four_bit:
        from transformers import BitsAndBytesConfig, GPT2LMHeadModel

        path = Path(".bench/distilgpt2-shape")
        model.save_pretrained(path)
        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32)
        model = GPT2LMHeadModel.from_pretrained(path, quantization_config=quant)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"))
    return train_step(model, batch, tokens)


def generate_step(batch: int, prompt_tokens: int, new_tokens: int) -> Callable[[], None]:
    """Sampling ``new_tokens`` for ``batch`` prompts (a PPO rollout's generation, no EOS: the worst case)."""
    model = distilgpt2().eval()
    ids = torch.randint(0, 50000, (batch, prompt_tokens))

    def step() -> None:
        with torch.no_grad():
            model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                           min_new_tokens=new_tokens, do_sample=True, pad_token_id=50256)

    return step


def forward_step(model: torch.nn.Module, batch: int, tokens: int) -> Callable[[], None]:
    """One no-grad forward pass of ``model`` on ``batch`` random sequences of ``tokens`` tokens."""
    model.eval()
    ids = torch.randint(0, 50000, (batch, tokens))

    def step() -> None:
        with torch.no_grad():
            model(input_ids=ids)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--tokens", type=int, default=192, help="tokens per training sequence (prompt + answer)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    p = get_profile("cpu")
    L, ppo = min(args.tokens, p.sft.max_length), p.ppo
    rows: list[tuple[str, str, float, float]] = []

    def add(stage: str, what: str, seconds: float, count: float) -> None:
        rows.append((stage, what, seconds, count))
        print(f"{stage:<12} {what:<58} {seconds:7.2f} s x {count:6.0f} = {seconds * count / 60:6.1f} min", flush=True)

    add("02 SFT", f"step: {p.sft.per_device_train_batch_size} x {L} tokens",
        timed(train_step(distilgpt2(), p.sft.per_device_train_batch_size, L), args.repeats), p.sft.max_steps)
    four_bit = p.qlora.load_in_4bit
    add("03 QLoRA", f"step: {p.qlora.per_device_train_batch_size} x {L} tokens, 4-bit base: {four_bit}",
        timed(lora_step(p.qlora.per_device_train_batch_size, L, four_bit), args.repeats), p.qlora.max_steps)
    add("04 reward", f"step: {p.reward.per_device_train_batch_size} pairs x {L} tokens",
        timed(train_step(distilgpt2(True), 2 * p.reward.per_device_train_batch_size, L, True), args.repeats),
        p.reward.max_steps)
    updates = ppo.total_updates + ppo.brevity_updates + ppo.sweep_updates * len(ppo.sweep_betas)
    gen = timed(generate_step(ppo.batch_size, 64, ppo.response_length), args.repeats)
    add("05 PPO", f"rollout: {ppo.batch_size} prompts x {ppo.response_length} new tokens", gen, updates)
    T = 64 + ppo.response_length
    opt = timed(train_step(distilgpt2(), ppo.mini_batch_size, T), args.repeats)
    fwd = timed(forward_step(distilgpt2(), ppo.batch_size, T), args.repeats)  # policy, reference, reward model
    per_update = opt * ppo.num_ppo_epochs * ppo.batch_size / ppo.mini_batch_size + 3 * fwd
    add("05 PPO", f"optimisation: {ppo.num_ppo_epochs} epochs x {ppo.batch_size // ppo.mini_batch_size} minibatches"
        " + 3 forward passes", per_update, updates)
    from transformers import DebertaV2Config, DebertaV2ForSequenceClassification

    judge = DebertaV2ForSequenceClassification(DebertaV2Config(  # deberta-v3-base's config
        vocab_size=128100, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
        relative_attention=True, position_buckets=256, pos_att_type=["p2c", "c2p"], max_relative_positions=-1,
        norm_rel_ebd="layer_norm", share_att_key=True, position_biased_input=False, num_labels=1))
    batches = 5 * p.eval.num_prompts / p.eval.batch_size  # 5 policies (base, SFT, QLoRA, PPO, ...) in notebook 06
    add("06 eval", f"greedy answers: {p.eval.batch_size} prompts x {p.eval.max_new_tokens} new tokens",
        timed(generate_step(p.eval.batch_size, 64, p.eval.max_new_tokens), 1), batches)
    add("06 eval", f"judge: {p.eval.batch_size} (prompt, answer) pairs x {T} tokens",
        timed(forward_step(judge, p.eval.batch_size, T), args.repeats), batches)
    lines = ["| stage | what one step does | s / step | steps | minutes |", "|---|---|---:|---:|---:|",
             *(f"| {s} | {w} | {sec:.2f} | {n:.0f} | {sec * n / 60:.1f} |" for s, w, sec, n in rows)]
    total = sum(sec * n for *_, sec, n in rows) / 60
    head = (f"Machine: {platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}; "
            f"sequences of {L} tokens. Steps only: add loading, plots, notebook 07 and PPO's judge scoring.")
    REPORT.write_text(f"# The cpu profile's cost, estimated\n\n{head}\n\n" + "\n".join(lines)
                      + f"\n\n**Total: ~{total:.0f} min.**\n")
    print(f"\ntotal ~{total:.0f} min; table in {REPORT}")


if __name__ == "__main__":
    main()
