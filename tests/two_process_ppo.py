"""Two PPO updates on a tiny GPT-2, run in one process (imported by ``tests/test_stages.py``) or launched in
several (``accelerate launch --num_processes 2 tests/two_process_ppo.py OUT.json``), for the test that several
processes compute what one does.

The whole batch is ``BATCH`` prompts, split evenly between the processes. Each update takes one optimizer step
on the whole batch (one PPO epoch, a minibatch = the process's share), so one process and two see the same data
in each step. Answers are greedy here, the same whichever process writes them (PPO samples, each process with its
own seed, so sampled runs differ by process count by design). Two runs in a row, greedy and then sampled, check that
a seed gives the same run for a given process count.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

BATCH = 8  # prompts per update, all processes together
PROMPTS = [f"Tell me about {w}." for w in ("pasta", "soil", "stars", "garlic", "moon", "seeds", "oven", "orbit")]
TEXTS = [f"\n\nHuman: Tell me about {w}.\n\nAssistant: The {w} helps the garden when you water it."
         for w in ("pasta", "soil", "stars", "garlic", "moon", "seeds", "oven", "orbit")]


@contextmanager
def greedy_rollouts() -> Iterator[None]:
    """PPO's rollouts greedy meanwhile: its generation helper called with ``do_sample=False``."""
    from rlhf_helpers import ppo

    sample = ppo.generate_ids

    def greedy(model: Any, tokenizer: Any, prompts: list[str], cfg: Any, **kwargs: Any) -> Any:
        return sample(model, tokenizer, prompts, dataclasses.replace(cfg, do_sample=False), **kwargs)

    ppo.generate_ids = greedy
    try:
        yield
    finally:
        ppo.generate_ids = sample


class LetterReward:
    """A reward that differs between answers, and between prompts (an untrained model's greedy answers can all be
    one repeated token): the prompt's length modulo 7, over 7, plus the share of vowels in the answer."""

    name = "letters"

    def score(self, prompts: list[str], responses: list[str]) -> list[float]:
        return [len(p) % 7 / 7 + sum(c in "aeiou" for c in r) / max(1, len(r))
                for p, r in zip(prompts, responses, strict=True)]


def one_run(world: int) -> dict[str, Any]:
    """Two updates from a freshly built model (rewards whitened too); the first update's whitened advantages (this
    process's rows) and both updates' log records."""
    from rlhf_helpers import ppo
    from rlhf_helpers.core.base_model import build_tiny_model, train_tokenizer
    from rlhf_helpers.core.config import ModelConfig, PPOConfig

    tokenizer = train_tokenizer(TEXTS, vocab_size=300, model_max_length=64)
    model_cfg = ModelConfig(vocab_size=300, n_layer=2, n_head=2, n_embd=32, n_positions=64)
    policy = build_tiny_model(model_cfg, tokenizer, seed=0)
    cfg = PPOConfig(batch_size=BATCH // world, mini_batch_size=BATCH // world, num_ppo_epochs=1, total_updates=2,
                    response_length=10, learning_rate=1e-3, missing_eos_penalty=None, whiten_rewards=True, seed=0,
                    mixed_precision="no")
    trainer = ppo.PPOTrainerLite(policy, None, tokenizer, LetterReward(), PROMPTS, cfg, progress=False)
    rollouts, make = [], trainer.make_rollout
    trainer.make_rollout = lambda *args, **kwargs: rollouts.append(make(*args, **kwargs)) or rollouts[-1]
    trainer.train()
    first = rollouts[0]
    advantages = [row[mask.bool()].tolist() for row, mask in zip(first.advantages, first.mask, strict=True)]
    return {"advantages": advantages, "history": trainer.history}


def main(out: str) -> None:
    """Two runs in this process; writes ``OUT.<rank>`` (JSON)."""
    from rlhf_helpers.core import distributed

    distributed.join()
    world, rank = distributed.world_size(), int(os.environ.get("RANK", "0"))
    with greedy_rollouts():
        runs = [one_run(world), one_run(world)]
    sampled = [one_run(world), one_run(world)]  # PPO's own sampling: each process with its own seed
    with open(f"{out}.{rank}", "w") as f:
        json.dump({"rank": rank, "world": world, "runs": runs, "sampled": sampled}, f)


if __name__ == "__main__":
    main(sys.argv[1])
