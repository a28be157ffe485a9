"""The course's own dataset: a deterministic, seeded generator of assistant-style Q&A data.

Everything in ``data/`` is produced by :func:`write` from the hand-written content in ``content.json``
(next to this file: templates, phrases, and every topic's facts, tasks and tips) and the settings below,
so it can be regenerated bit-for-bit (``python -m rlhf_helpers.course_dataset --out data --seed 0``, or
``make data``) and a test checks that the committed files still equal the code's output.

How a record is built
---------------------
* A **prompt** is a *template* filled with a *task* of one topic: "How do I {task}?" + "cook fluffy
  rice". Ten topics, twelve tasks each, six generic and two topic-flavoured templates.
* A **good answer** is a polite opener ("Happy to help!"), two or three of the task's tips (short,
  concrete sentences) and, often, a friendly closer ("Good luck!"). 15-60 words.
* A **flawed answer** shows one failure: ``off_topic`` (a good answer to another topic's task),
  ``rude``, ``rambling`` (filler sentences), ``repetitive`` (a tip said three times), ``refusal``
  (declines a harmless question), ``vague`` (a short non-answer) or ``too_short`` (correct but thin: an
  opener and a single tip).

The files
---------
* ``sft.jsonl`` - demonstrations of *mixed* quality, like real data: ~65% ``good``, the rest mildly
  flawed (``long``, ``repetitive``, ``no_opener``, ``vague``), so a later PPO stage has room to improve.
* ``preferences.jsonl`` - (chosen, rejected) pairs, one failure type each, ordered by the gold judge
  (:mod:`rlhf_helpers.judge`) with a margin; a stated share (:data:`LABEL_NOISE_RATE`) is swapped
  on purpose and flagged ``label_noise=True``, as human labels are never perfect.
* ``heldout.jsonl`` - prompts that never occur in training: the last two tasks of every topic
  (never used in training) and a template reserved for evaluation, each with a reference answer.
* ``pretrain.jsonl`` - plain prose paragraphs about the topics (no chat format), so a tiny language
  model can learn words and topics before SFT teaches it the Human/Assistant format.

Determinism: every part uses its own ``random.Random(f"{seed}:{part}")`` and only ordered
containers, so the output depends on nothing but ``seed`` and the sizes.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

from ..core.artifacts import write_text
from ..judge import TOPICS, gold_score

# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------
FILES = ("sft", "preferences", "heldout", "pretrain")  # -> data/<name>.jsonl
DEFAULT_SIZES = {"sft": 3000, "preferences": 4000, "heldout": 200, "pretrain": 3000}
LABEL_NOISE_RATE = 0.05  # share of preference pairs whose chosen/rejected are swapped on purpose
MIN_MARGIN = 0.05  # every clean pair: gold_score(chosen) - gold_score(rejected) >= this
HELDOUT_ITEMS = 2  # the last tasks of every topic are kept for evaluation only
# too_short pairs the rambling ones: without them every shorter answer in the data is the better one, and a reward
# model learns "shorter is better" (on the tiny profile PPO then cut the third tip from its answers).
FAILURES = ("off_topic", "rude", "rambling", "repetitive", "refusal", "vague", "too_short")
# SFT demonstration quality mix (fractions sum to 1).
SFT_QUALITY = {"good": 0.65, "long": 0.10, "repetitive": 0.08, "no_opener": 0.09, "vague": 0.08}

# ---------------------------------------------------------------------------------------------
# Content: the hand-written templates, phrases and topics, read once from content.json (edit it there,
# then `make data`). JSON lists come back as tuples: the tables are constants, and CLOSERS + a topic's
# closers must concatenate.
# ---------------------------------------------------------------------------------------------
CONTENT_FILE = Path(__file__).parent / "content.json"


def _tuples(obj: Any) -> Any:
    """``obj`` with every list turned into a tuple, recursively."""
    if isinstance(obj, list):
        return tuple(_tuples(x) for x in obj)
    if isinstance(obj, dict):
        return {k: _tuples(v) for k, v in obj.items()}
    return obj


_LOADED = _tuples(json.loads(CONTENT_FILE.read_text(encoding="utf-8")))
# Shared phrases. The judge recognises each of them (tests check every phrase against its markers).
GENERIC_TEMPLATES: tuple[str, ...] = _LOADED["generic_templates"]  # "How do I {task}?"
HELDOUT_TEMPLATE: str = _LOADED["heldout_template"]  # used only in heldout.jsonl
OPENERS: tuple[str, ...] = _LOADED["openers"]
CLOSERS: tuple[str, ...] = _LOADED["closers"]
RUDE_OPENERS: tuple[str, ...] = _LOADED["rude_openers"]
RUDE_CLOSERS: tuple[str, ...] = _LOADED["rude_closers"]
REFUSALS: tuple[str, ...] = _LOADED["refusals"]  # "{area}" becomes the topic's area
REFUSAL_TAILS: tuple[str, ...] = _LOADED["refusal_tails"]  # "" means no tail
VAGUE_LINES: tuple[str, ...] = _LOADED["vague_lines"]
FILLERS: tuple[str, ...] = _LOADED["fillers"]
# Mildly unspecific sentences for the SFT "vague" demonstrations (no vague *marker*: just less detail).
SOFT_GENERIC: tuple[str, ...] = _LOADED["soft_generic"]
# Topic content: {topic: {"area", "templates", "closers", "facts" (for pretraining prose), "items"}}, where
# "items" is ((task, (tip, tip, tip, tip)), ...) in file order ({task: [tips]} in the JSON). The last
# HELDOUT_ITEMS tasks of a topic appear only in heldout.jsonl.
CONTENT: dict[str, dict] = {topic: {**c, "items": tuple(c["items"].items())}
                           for topic, c in _LOADED["topics"].items()}
assert tuple(CONTENT) == TOPICS, "content.json and judge.TOPIC_LEXICONS must list the same topics in order"


# ---------------------------------------------------------------------------------------------
# Prompts
# ---------------------------------------------------------------------------------------------
def _items(topic: str, heldout: bool) -> list[tuple[str, tuple[str, ...]]]:
    """The (task, tips) items of a topic used for training (``heldout=False``) or for evaluation."""
    items = list(CONTENT[topic]["items"])
    return items[-HELDOUT_ITEMS:] if heldout else items[:-HELDOUT_ITEMS]


def _templates(topic: str) -> list[str]:
    """The training templates of a topic: the generic ones plus its own two."""
    return list(GENERIC_TEMPLATES) + list(CONTENT[topic]["templates"])


def training_prompts() -> list[tuple[str, str, tuple[str, ...]]]:
    """Every (prompt, topic, tips) that SFT and preference records may use, in a fixed order."""
    return [(template.format(task=task), topic, tips)
            for topic in TOPICS for task, tips in _items(topic, heldout=False) for template in _templates(topic)]


def heldout_prompts() -> list[tuple[str, str, tuple[str, ...]]]:
    """Prompts never used for training: held-out tasks with any template, and the held-out template."""
    out = []
    for topic in TOPICS:
        for task, tips in _items(topic, heldout=True):
            out += [(t.format(task=task), topic, tips) for t in _templates(topic) + [HELDOUT_TEMPLATE]]
        out += [(HELDOUT_TEMPLATE.format(task=task), topic, tips) for task, tips in _items(topic, heldout=False)]
    return out


# ---------------------------------------------------------------------------------------------
# Answers
# ---------------------------------------------------------------------------------------------
def _pick_tips(rng: random.Random, tips: tuple[str, ...], k: int) -> list[str]:
    """k tips in their original order (they read naturally in that order)."""
    return [tips[i] for i in sorted(rng.sample(range(len(tips)), k))]


def _closer(rng: random.Random, topic: str) -> str:
    return rng.choice(CLOSERS + CONTENT[topic]["closers"])


def good_answer(rng: random.Random, topic: str, tips: tuple[str, ...], n_tips: int | None = None) -> str:
    """Polite opener + 2-3 tips + (60% of the time) a friendly closer. About 18-55 words."""
    parts = [rng.choice(OPENERS)] + _pick_tips(rng, tips, n_tips or rng.choice((2, 3)))
    if rng.random() < 0.6:
        parts.append(_closer(rng, topic))
    return " ".join(parts)


def sft_answer(rng: random.Random, quality: str, topic: str, tips: tuple[str, ...]) -> str:
    """A demonstration of the given quality; the flaws are mild on purpose."""
    if quality == "good":
        return good_answer(rng, topic, tips)
    if quality == "long":  # every tip, plus one filler sentence: a bit long-winded
        parts = [rng.choice(OPENERS), rng.choice(FILLERS)] + list(tips) + [_closer(rng, topic)]
        return " ".join(parts)
    if quality == "repetitive":  # one tip said twice
        chosen = _pick_tips(rng, tips, 2)
        parts = [rng.choice(OPENERS)] + chosen + [rng.choice(chosen)]
        return " ".join(parts)
    if quality == "no_opener":  # the tips only: correct but curt
        return " ".join(_pick_tips(rng, tips, rng.choice((2, 3))))
    if quality == "vague":  # one tip and a generic sentence: less specific
        return " ".join([rng.choice(OPENERS), rng.choice(tips), rng.choice(SOFT_GENERIC)])
    raise ValueError(f"unknown SFT quality {quality!r}; expected one of {list(SFT_QUALITY)}")


def failed_answer(rng: random.Random, failure: str, topic: str, tips: tuple[str, ...]) -> str:
    """An answer showing one failure type (the rejected side of a clean preference pair)."""
    if failure == "off_topic":  # a perfectly good answer... to another topic's question
        other = rng.choice([t for t in TOPICS if t != topic])
        _, other_tips = rng.choice(_items(other, heldout=False))
        return good_answer(rng, other, other_tips)
    if failure == "rude":
        parts = [rng.choice(RUDE_OPENERS)] + _pick_tips(rng, tips, 2)
        if rng.random() < 0.7:
            parts.append(rng.choice(RUDE_CLOSERS))
        return " ".join(parts)
    if failure == "rambling":  # the content is there, buried in filler
        fillers = rng.sample(FILLERS, 3)
        chosen = _pick_tips(rng, tips, rng.choice((2, 3)))
        parts = [rng.choice(OPENERS), fillers[0], chosen[0], fillers[1], *chosen[1:], fillers[2]]
        return " ".join(parts)
    if failure == "repetitive":  # a tip looped three times, as small language models do
        a, b = _pick_tips(rng, tips, 2)
        loop = rng.choice(([a, b, a, a], [a, a, a, b], [a, b, b, b]))
        return " ".join([rng.choice(OPENERS)] + loop)
    if failure == "refusal":
        line = rng.choice(REFUSALS).format(area=CONTENT[topic]["area"])
        return " ".join(p for p in (line, rng.choice(REFUSAL_TAILS)) if p)
    if failure == "vague":
        parts = ([rng.choice(OPENERS)] if rng.random() < 0.5 else []) + rng.sample(VAGUE_LINES, rng.choice((1, 2)))
        return " ".join(parts)
    if failure == "too_short":  # on topic and polite, but a single tip: less help than the question asked for
        return " ".join([rng.choice(OPENERS), rng.choice(tips)])
    raise ValueError(f"unknown failure {failure!r}; expected one of {list(FAILURES)}")


def pretrain_paragraph(rng: random.Random, topic: str) -> str:
    """Plain prose about a topic: a general fact, 2-3 tips from any of its tasks, maybe another fact."""
    facts = CONTENT[topic]["facts"]
    all_tips = [tip for _, tips in CONTENT[topic]["items"] for tip in tips]
    parts = [rng.choice(facts)] + rng.sample(all_tips, rng.choice((2, 3)))
    if rng.random() < 0.5:
        parts.append(rng.choice([f for f in facts if f != parts[0]]))
    return " ".join(parts)


# ---------------------------------------------------------------------------------------------
# The four files
# ---------------------------------------------------------------------------------------------
def _balanced(rng: random.Random, weights: dict[str, float] | tuple[str, ...], n: int) -> list[str]:
    """n labels in exact proportions (equal shares for a tuple), shuffled."""
    if isinstance(weights, tuple):
        weights = {k: 1 / len(weights) for k in weights}
    names = list(weights)
    counts = [int(n * weights[k] + 1e-9) for k in names]  # (the 1e-9 absorbs float error: 0.29*100)
    for i in range(n - sum(counts)):  # hand out the rounding remainder, first labels first
        counts[i % len(names)] += 1
    labels = [k for k, c in zip(names, counts, strict=True) for _ in range(c)]
    rng.shuffle(labels)
    return labels


def make_sft(seed: int, n: int) -> list[dict]:
    rng = random.Random(f"{seed}:sft")
    pool, seen, records = training_prompts(), set(), []
    for quality in _balanced(rng, SFT_QUALITY, n):
        while True:  # redraw exact duplicates so no demonstration appears twice
            prompt, topic, tips = rng.choice(pool)
            response = sft_answer(rng, quality, topic, tips)
            if (prompt, response) not in seen:
                break
        seen.add((prompt, response))
        records.append({"prompt": prompt, "response": response, "topic": topic, "quality": quality})
    return records


def make_preferences(seed: int, n: int, noise_rate: float = LABEL_NOISE_RATE) -> list[dict]:
    rng = random.Random(f"{seed}:preferences")
    pool, seen, records = training_prompts(), set(), []
    for failure in _balanced(rng, FAILURES, n):
        for _attempt in range(50):
            prompt, topic, tips = rng.choice(pool)
            chosen, rejected = good_answer(rng, topic, tips), failed_answer(rng, failure, topic, tips)
            # The gold judge decides the direction: keep only pairs it orders with a clear margin.
            margin = gold_score(prompt, chosen) - gold_score(prompt, rejected)
            if margin >= MIN_MARGIN and (prompt, chosen, rejected) not in seen:
                break
        else:
            raise RuntimeError(f"could not build a {failure} pair with margin >= {MIN_MARGIN} in 50 tries")
        seen.add((prompt, chosen, rejected))
        records.append({"prompt": prompt, "chosen": chosen, "rejected": rejected, "topic": topic,
                        "failure": failure, "label_noise": False})
    # Label noise: swap an exact share of pairs, chosen at random, and flag them.
    for i in sorted(rng.sample(range(n), round(noise_rate * n))):
        r = records[i]
        r["chosen"], r["rejected"], r["label_noise"] = r["rejected"], r["chosen"], True
    return records


def make_heldout(seed: int, n: int) -> list[dict]:
    rng = random.Random(f"{seed}:heldout")
    pool = heldout_prompts()
    by_topic = {t: [p for p in pool if p[1] == t] for t in TOPICS}
    picked = []
    for i, topic in enumerate(TOPICS):  # equal shares per topic (remainder to the first topics)
        k = n // len(TOPICS) + (i < n % len(TOPICS))
        if k > len(by_topic[topic]):
            raise ValueError(f"only {len(by_topic[topic])} held-out prompts exist for {topic}; asked for {k}")
        picked += rng.sample(by_topic[topic], k)
    rng.shuffle(picked)
    return [{"prompt": p, "reference": good_answer(rng, topic, tips, n_tips=3), "topic": topic}
            for p, topic, tips in picked]


def make_pretrain(seed: int, n: int) -> list[dict]:
    rng = random.Random(f"{seed}:pretrain")
    return [{"text": pretrain_paragraph(rng, topic), "topic": topic} for topic in _balanced(rng, TOPICS, n)]


def generate(seed: int = 0, n_sft: int = DEFAULT_SIZES["sft"], n_pref: int = DEFAULT_SIZES["preferences"],
             n_heldout: int = DEFAULT_SIZES["heldout"], n_pretrain: int = DEFAULT_SIZES["pretrain"],
             ) -> dict[str, list[dict]]:
    """All four files' records: ``{"sft": [...], "preferences": [...], "heldout": [...], "pretrain": [...]}``."""
    return {
        "sft": make_sft(seed, n_sft),
        "preferences": make_preferences(seed, n_pref),
        "heldout": make_heldout(seed, n_heldout),
        "pretrain": make_pretrain(seed, n_pretrain),
    }


def to_jsonl(records: list[dict]) -> str:
    """The exact text written to disk: one compact ASCII JSON object per line."""
    return "".join(json.dumps(r, ensure_ascii=True) + "\n" for r in records)


def write(out_dir: Path | str, seed: int = 0, **sizes: int) -> dict[str, int]:
    """Generate the dataset and write ``<out_dir>/<name>.jsonl`` for each file. Returns record counts.

    ``sizes`` (``n_sft=...`` etc.) are passed to :func:`generate`; the committed data uses the defaults.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = generate(seed, **sizes)
    for name in FILES:
        write_text(out_dir / f"{name}.jsonl", to_jsonl(data[name]))  # atomic: temp file, then rename
    return {name: len(data[name]) for name in FILES}


def check(out_dir: Path | str, seed: int = 0, **sizes: int) -> list[str]:
    """Names of the files in ``out_dir`` that are missing or differ from :func:`generate`'s output."""
    paths = {name: Path(out_dir) / f"{name}.jsonl" for name in FILES}
    missing = [p.name for p in paths.values() if not p.exists()]
    if missing:  # no need to generate anything
        return missing
    data = generate(seed, **sizes)
    return [p.name for name, p in paths.items() if p.read_bytes() != to_jsonl(data[name]).encode("ascii")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rlhf_helpers.course_dataset", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="data", help="output folder (default: data)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0, the committed data)")
    parser.add_argument("--check", action="store_true", help="only check that the files are up to date")
    args = parser.parse_args(argv)
    if args.check:
        stale = check(args.out, args.seed)
        print("data is up to date" if not stale else f"out of date: {', '.join(stale)} (regenerate without --check)")
        return 1 if stale else 0
    for name, count in write(args.out, args.seed).items():
        print(f"{Path(args.out) / (name + '.jsonl')}: {count} records")
    return 0
