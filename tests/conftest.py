"""Shared, session-scoped fixtures: a tiny tokenizer and untrained tiny GPT-2 models, built in a second.

Fixtures (reuse them in any test module):

* ``sample_texts`` -- ``list[str]``: a small fixed corpus (chat-format pairs + topic prose) written here.
* ``tiny_tokenizer`` -- a byte-level BPE tokenizer trained on ``sample_texts`` with
  :func:`rlhf_helpers.core.base_model.train_tokenizer` (vocab <= 512, specials ``<|endoftext|>`` = bos = eos = unk and
  ``<|pad|>``, chat template applied, padding side left). Session-scoped: do not mutate it in a test, or
  restore what you change (e.g. ``padding_side``).
* ``tiny_model_config`` -- a reduced :class:`~rlhf_helpers.core.config.ModelConfig` (2 layers, 64 dims,
  128 positions, 20 pretraining steps of 8 x 32 tokens): use it with ``dataclasses.replace`` for variants.
* ``make_tiny_model`` -- factory ``make_tiny_model(seed=0, **model_config_overrides) -> GPT2LMHeadModel``:
  a fresh *untrained* model (eval mode, ~100k parameters) sized by ``tiny_model_config`` and the
  tokenizer above. Fast (~20 ms), so each test gets its own model and can change it freely.
* ``course_data_dir`` -- a directory holding small ``sft/preferences/heldout/pretrain.jsonl`` files in the
  canonical schemas (DESIGN.md), built from ``sample_texts``; for code that reads the course data files.
* ``one_torch_thread`` -- torch on one thread for the test (restored after): the tiny models gain nothing from
  intra-op threads, and on a shared, busy CPU two threads can make each small matmul ~50x slower (OpenMP threads
  waiting for each other). Use it with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``.
* every test runs without ``$RLHF_SET``, ``$RLHF_HUB_MAP`` and ``$RLHF_CHECK_CLAIMS`` (autouse): a value exported in the developer's shell
  would change the profiles and the notebook kernels the tests start; a test that wants one sets it itself.
* ``sft_profile``, ``sft_prep``, ``full_sft_run`` -- *module*-scoped (each test module gets its own): a tiny
  profile on ``course_data_dir`` with a 2-layer base built from it and short SFT/QLoRA settings, its prepared
  data, and a full SFT run of :data:`SFT_STEPS` steps on it.
"""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import pytest

from rlhf_helpers.core.config import ModelConfig

SFT_STEPS = 30  # steps of the SFT and QLoRA runs of the sft_* fixtures

TOPICS = {
    "cooking": ["pasta", "garlic", "oven", "recipe", "salt", "onion", "soup", "bread"],
    "gardening": ["soil", "seeds", "water", "tomato", "sunlight", "compost", "roots", "weeds"],
    "astronomy": ["stars", "planet", "telescope", "orbit", "moon", "galaxy", "comet", "light"],
}
_VERBS = ["helps", "needs", "uses", "improves", "changes", "protects", "feeds", "makes"]
_ADJS = ["good", "fresh", "strong", "bright", "careful", "simple", "warm", "steady"]


def _sentence(rng: random.Random, topic: str) -> str:
    w = TOPICS[topic]
    return (
        f"The {rng.choice(_ADJS)} {rng.choice(w)} {rng.choice(_VERBS)} the {rng.choice(w)} "
        f"when you {rng.choice(['check', 'add', 'watch', 'keep'])} the {rng.choice(w)}."
    )


def _records(seed: int = 0) -> dict[str, list[dict]]:
    rng = random.Random(seed)
    topics = list(TOPICS)
    out: dict[str, list[dict]] = {"sft": [], "preferences": [], "heldout": [], "pretrain": []}
    for i in range(120):
        t = topics[i % len(topics)]
        word = rng.choice(TOPICS[t])
        out["sft"].append({"prompt": f"How do I use {word} for {t}?",
                           "response": " ".join(_sentence(rng, t) for _ in range(2)),
                           "topic": t, "quality": "good"})
        out["preferences"].append({"prompt": f"Tell me about {word}.", "chosen": _sentence(rng, t),
                                   "rejected": "I don't know.", "topic": t, "failure": "refusal",
                                   "label_noise": False})
        out["pretrain"].append({"text": " ".join(_sentence(rng, t) for _ in range(4)), "topic": t})
    for i in range(12):
        t = topics[i % len(topics)]
        out["heldout"].append({"prompt": f"What is {rng.choice(TOPICS[t])}?", "reference": _sentence(rng, t),
                               "topic": t})
    return out


@pytest.fixture(scope="session")
def sample_texts() -> list[str]:
    recs = _records()
    texts = [f"\n\nHuman: {r['prompt']}\n\nAssistant: {r['response']}" for r in recs["sft"]]
    texts += [r["text"] for r in recs["pretrain"]]
    texts += ["Numbers 0 1 2 3 42 100, symbols {} [] () <> 'quotes' \"double\" and Unicode: café, naïve, 東京 🙂."]
    return texts


@pytest.fixture(scope="session")
def tiny_tokenizer(sample_texts):
    from rlhf_helpers.core.base_model import train_tokenizer

    return train_tokenizer(sample_texts, vocab_size=512, model_max_length=128)


@pytest.fixture(scope="session")
def tiny_model_config() -> ModelConfig:
    return ModelConfig(vocab_size=512, n_layer=2, n_head=2, n_embd=64, n_positions=128,
                       pretrain_steps=20, pretrain_batch_size=8, pretrain_seq_len=32, pretrain_lr=3e-3)


@pytest.fixture(scope="session")
def make_tiny_model(tiny_tokenizer, tiny_model_config):
    from rlhf_helpers.core.base_model import build_tiny_model

    def make(seed: int = 0, **overrides):
        cfg = dataclasses.replace(tiny_model_config, **overrides)
        return build_tiny_model(cfg, tiny_tokenizer, seed=seed).eval()

    return make


@pytest.fixture(scope="session")
def course_data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("course_data")
    for name, rows in _records().items():
        with open(root / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
    return root


@pytest.fixture(autouse=True, scope="session")
def no_setting_overrides():
    with pytest.MonkeyPatch.context() as mp:  # session-wide: before any fixture builds a profile
        mp.delenv("RLHF_SET", raising=False)
        mp.delenv("RLHF_HUB_MAP", raising=False)
        mp.delenv("RLHF_CHECK_CLAIMS", raising=False)
        yield


@pytest.fixture
def one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def sft_profile(tmp_path_factory, course_data_dir, tiny_model_config):
    from rlhf_helpers.core import base_model
    from rlhf_helpers.core.artifacts import Paths
    from rlhf_helpers.core.config import Profile, QLoRAConfig, SFTConfig
    from rlhf_helpers.data_prep import prepare_course_data

    common = dict(max_steps=SFT_STEPS, per_device_train_batch_size=16, eval_steps=10, logging_steps=5, max_length=96)
    prof = Profile(name="tiny", model=tiny_model_config, sft=SFTConfig(learning_rate=3e-3, **common),
                   qlora=QLoRAConfig(learning_rate=1e-2, lora_r=8, lora_alpha=16, lora_dropout=0.0, **common),
                   paths=Paths(root=tmp_path_factory.mktemp("sft_out"), data_dir=course_data_dir))
    prepare_course_data(prof)
    base_model.build_tiny_base(prof, progress=False)
    return prof


@pytest.fixture(scope="module")
def sft_prep(sft_profile):
    from rlhf_helpers.data_prep import load_prepared

    return load_prepared(sft_profile)


@pytest.fixture(scope="module")
def full_sft_run(sft_profile, sft_prep):
    from rlhf_helpers import sft_full

    return sft_full.train_full(sft_profile, sft_prep, progress=False)


def pytest_collection_modifyitems(config, items):
    """Run the course notebooks (marker ``notebook``) after every unit test: they are the slowest tests, and
    a broken helper should fail fast in its own unit test first. Their own order (``tests/test_notebooks.py``) is kept."""
    items.sort(key=lambda item: item.get_closest_marker("notebook") is not None)
