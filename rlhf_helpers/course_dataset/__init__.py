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
* A **curt answer** is the tips alone: correct, but without a friendly word.
* A **flawed answer** shows one failure: ``curt`` (the tips alone), ``off_topic`` (a good answer to another topic's task),
  ``rude``, ``rambling`` (filler sentences), ``repetitive`` (a tip said three times), ``refusal``
  (declines a harmless question), ``vague`` (a short non-answer) or ``too_short`` (correct but thin: an
  opener and a single tip).

The files
---------
* ``sft.jsonl`` - demonstrations written by busy contractors: mostly ``curt`` (correct tips, no friendly
  word), some mildly flawed (``long``, ``repetitive``, ``vague``), and under a third ``good`` (with an opener
  and often a closer). So the SFT model answers curtly, and warmth is what the preference pairs teach: as in
  InstructGPT, preferences express what the demonstrations lack, and PPO finds the warm answers among the
  SFT model's own samples.
* ``preferences.jsonl`` - (chosen, rejected) pairs, one failure type each, ordered by the gold judge
  (:mod:`rlhf_helpers.judge`) with a margin; a stated share (:data:`LABEL_NOISE_RATE`) is swapped
  on purpose and flagged ``label_noise=True``, as human labels are never perfect.
* ``heldout.jsonl`` - prompts that never occur in training, each with a reference answer and a ``split``:
  ``seen_task`` (a task trained on, asked with one of the templates reserved for evaluation: the headline
  numbers) or ``unseen_task`` (the last two tasks of every topic, never trained on: generalisation).
* ``pretrain.jsonl`` - plain prose paragraphs about the topics (no chat format), so a tiny language
  model can learn words and topics before SFT teaches it the Human/Assistant format.
* ``reviews.jsonl`` - labelled film reviews for notebook 09's sentiment control (:mod:`.reviews`); no other
  file or stage reads them.

The datasheet, ``data/README.md``, has a generated block (between ``<!-- generated:start -->`` and
``<!-- generated:end -->``) with every table and number: :func:`datasheet_tables` computes it from the files,
:func:`write` rewrites it, and :func:`check` reports it when it is stale.

Determinism: every part uses its own ``random.Random(f"{seed}:{part}")`` and only ordered
containers, so the output depends on nothing but ``seed`` and the sizes.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from pathlib import Path
from statistics import mean, median
from typing import Any

from .. import judge
from ..core.artifacts import read_records, write_text
from ..judge import TOPICS, gold_score
from .reviews import MIXED_SHARE, OPENINGS, make_reviews

# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------
QA_FILES = ("sft", "preferences", "heldout", "pretrain")  # the assistant Q&A world of notebooks 01-08
FILES = (*QA_FILES, "reviews")  # -> data/<name>.jsonl
DEFAULT_SIZES = {"sft": 3000, "preferences": 4000, "heldout": 220, "pretrain": 3000, "reviews": 2000}
HELDOUT_UNSEEN_PER_TOPIC = 6  # unseen-task prompts per topic in heldout.jsonl; the rest are seen-task prompts
HELDOUT_SPLITS = ("seen_task", "unseen_task")
LABEL_NOISE_RATE = 0.05  # share of preference pairs whose chosen/rejected are swapped on purpose
MIN_MARGIN = 0.05  # every clean pair: gold_score(chosen) - gold_score(rejected) >= this
HELDOUT_ITEMS = 2  # the last tasks of every topic are kept for evaluation only
TRAINED_ITEMS = 4  # the first tasks of every topic are trained on; the ones between are not used (tiny profile: SFT
# eval loss 0.29 after 200 steps with four trained tasks per topic, 0.70 after 250 steps with all ten)
# too_short pairs the rambling ones: without them every shorter answer in the data is the better one, and a reward
# model learns "shorter is better" (on the tiny profile PPO then cut the third tip from its answers).
# Shares of the failure types among the preference pairs: curt (the warmth the demonstrations lack) and off_topic
# (the hardest for a small reward model: the tips must fit *this* question) get twice the others' share.
FAILURE_SHARES = {"curt": 0.2, "off_topic": 0.2, "rude": 0.1, "rambling": 0.1, "repetitive": 0.1, "refusal": 0.1,
                  "vague": 0.1, "too_short": 0.1}
FAILURES = tuple(FAILURE_SHARES)
# SFT demonstration quality mix (fractions sum to 1).
SFT_QUALITY = {"curt": 0.45, "good": 0.30, "long": 0.08, "repetitive": 0.07, "vague": 0.10}

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
HELDOUT_TEMPLATES: tuple[str, ...] = _LOADED["heldout_templates"]  # used only in heldout.jsonl
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
    return items[-HELDOUT_ITEMS:] if heldout else items[:TRAINED_ITEMS]


def _templates(topic: str) -> list[str]:
    """The training templates of a topic: the generic ones plus its own two."""
    return list(GENERIC_TEMPLATES) + list(CONTENT[topic]["templates"])


def training_prompts() -> list[tuple[str, str, tuple[str, ...]]]:
    """Every (prompt, topic, tips) that SFT and preference records may use, in a fixed order."""
    return [(template.format(task=task), topic, tips)
            for topic in TOPICS for task, tips in _items(topic, heldout=False) for template in _templates(topic)]


def heldout_prompts() -> list[tuple[str, str, tuple[str, ...], str]]:
    """Prompts never used for training, as (prompt, topic, tips, split): ``seen_task`` = a trained task asked
    with a held-out template; ``unseen_task`` = a held-out task with any template."""
    out = []
    for topic in TOPICS:
        out += [(t.format(task=task), topic, tips, "seen_task")
                for task, tips in _items(topic, heldout=False) for t in HELDOUT_TEMPLATES]
        out += [(t.format(task=task), topic, tips, "unseen_task")
                for task, tips in _items(topic, heldout=True) for t in _templates(topic) + list(HELDOUT_TEMPLATES)]
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


def curt_answer(rng: random.Random, tips: tuple[str, ...]) -> str:
    """Two or three tips and nothing else: correct, not warm."""
    return " ".join(_pick_tips(rng, tips, rng.choice((2, 3))))


def sft_answer(rng: random.Random, quality: str, topic: str, tips: tuple[str, ...]) -> str:
    """A demonstration of the given quality. Only ``good`` ones have friendly words; the flaws are mild."""
    if quality == "good":
        return good_answer(rng, topic, tips)
    if quality == "curt":
        return curt_answer(rng, tips)
    if quality == "long":  # a filler sentence and every tip: a bit long-winded
        return " ".join([rng.choice(FILLERS), *tips])
    if quality == "repetitive":  # one tip said twice
        chosen = _pick_tips(rng, tips, 2)
        return " ".join([*chosen, rng.choice(chosen)])
    if quality == "vague":  # one tip and a generic sentence: less specific
        return " ".join([rng.choice(tips), rng.choice(SOFT_GENERIC)])
    raise ValueError(f"unknown SFT quality {quality!r}; expected one of {list(SFT_QUALITY)}")


def failed_answer(rng: random.Random, failure: str, topic: str, tips: tuple[str, ...]) -> str:
    """An answer showing one failure type (the rejected side of a clean preference pair)."""
    if failure == "curt":
        return curt_answer(rng, tips)
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
    all_tips = [tip for heldout in (False, True) for _, tips in _items(topic, heldout) for tip in tips]
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
    for failure in _balanced(rng, FAILURE_SHARES, n):
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
    """Every topic gets :data:`HELDOUT_UNSEEN_PER_TOPIC` unseen-task prompts and an equal share of the
    remaining ``n`` as seen-task prompts (remainder to the first topics)."""
    rng = random.Random(f"{seed}:heldout")
    pool = heldout_prompts()
    n_seen = n - HELDOUT_UNSEEN_PER_TOPIC * len(TOPICS)
    if n_seen < 0:
        raise ValueError(f"n_heldout={n} is below the {HELDOUT_UNSEEN_PER_TOPIC * len(TOPICS)} unseen-task prompts")
    picked = []
    for i, topic in enumerate(TOPICS):
        wanted = {"seen_task": n_seen // len(TOPICS) + (i < n_seen % len(TOPICS)),
                  "unseen_task": HELDOUT_UNSEEN_PER_TOPIC}
        for split, k in wanted.items():
            candidates = [p for p in pool if p[1] == topic and p[3] == split]
            if k > len(candidates):
                raise ValueError(f"only {len(candidates)} {split} held-out prompts exist for {topic}; asked for {k}")
            picked += rng.sample(candidates, k)
    rng.shuffle(picked)
    return [{"prompt": p, "reference": good_answer(rng, topic, tips, n_tips=3), "topic": topic, "split": split}
            for p, topic, tips, split in picked]


def make_pretrain(seed: int, n: int) -> list[dict]:
    rng = random.Random(f"{seed}:pretrain")
    return [{"text": pretrain_paragraph(rng, topic), "topic": topic} for topic in _balanced(rng, TOPICS, n)]


def generate(seed: int = 0, n_sft: int = DEFAULT_SIZES["sft"], n_pref: int = DEFAULT_SIZES["preferences"],
             n_heldout: int = DEFAULT_SIZES["heldout"], n_pretrain: int = DEFAULT_SIZES["pretrain"],
             n_reviews: int = DEFAULT_SIZES["reviews"]) -> dict[str, list[dict]]:
    """Every file's records: ``{"sft": [...], "preferences": [...], "heldout": [...], "pretrain": [...],
    "reviews": [...]}``."""
    return {
        "sft": make_sft(seed, n_sft),
        "preferences": make_preferences(seed, n_pref),
        "heldout": make_heldout(seed, n_heldout),
        "pretrain": make_pretrain(seed, n_pretrain),
        "reviews": make_reviews(seed, n_reviews),
    }


def to_jsonl(records: list[dict]) -> str:
    """The exact text written to disk: one compact ASCII JSON object per line."""
    return "".join(json.dumps(r, ensure_ascii=True) + "\n" for r in records)


# ---------------------------------------------------------------------------------------------
# The datasheet (data/README.md): every number in it is computed here and written between the markers
# ---------------------------------------------------------------------------------------------
README = "README.md"
GENERATED_START, GENERATED_END = "<!-- generated:start -->", "<!-- generated:end -->"
EASY_WORSE = 0.1  # a failure is "easy" when its worse answers score under this on average
# What each kind of answer looks like (the datasheet's wording; counts and lengths are measured, not typed).
SFT_QUALITY_LOOKS: dict[str, str] = {
    "curt": "the tips alone: correct, no friendly word",
    "good": f'a friendly opener ("{OPENERS[0]}") + tips + often a friendly closer ("{CLOSERS[1]}")',
    "long": f'a filler sentence ("{FILLERS[1]}") + every tip of the task',
    "repetitive": "tips, one of them said twice",
    "vague": f'a tip + a generic line ("{SOFT_GENERIC[2]}")',
}
FAILURE_LOOKS: dict[str, str] = {
    "curt": "the tips alone, without a friendly word",
    "off_topic": "a good answer to another topic's task",
    "rude": f'a rude opener ("{RUDE_OPENERS[0]}") + tips + often a rude closer ("{RUDE_CLOSERS[0]}")',
    "rambling": "opener + tips buried among filler sentences",
    "repetitive": 'opener + a tip looped ("A B A A", "A A A B", "A B B B")',
    "refusal": f'"{REFUSALS[0]}" (+ maybe "{REFUSAL_TAILS[1]}")',
    "vague": f'(opener +) "{VAGUE_LINES[0]} {VAGUE_LINES[-1]}"',
    "too_short": "opener + a single tip",
}
def _words(text: str) -> int:
    """Words, split on spaces."""
    return len(text.split())


def _span(values: list[int]) -> str:
    """'3' or '2-3': the range of some counts."""
    lo, hi = min(values), max(values)
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def _tips_in(text: str, topic: str) -> int:
    """How many distinct tips of ``topic`` the text contains."""
    return sum(tip in text for _, tips in CONTENT[topic]["items"] for tip in tips)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def _datasheet(data: dict[str, list[dict]], n_bytes: dict[str, int]) -> str:
    """The datasheet's generated markdown for these records (``n_bytes``: each file's size on disk)."""
    sft, prefs, held, pre = (data[name] for name in QA_FILES)
    task_of = {t.format(task=task): task for topic in TOPICS for task, _ in CONTENT[topic]["items"]
               for t in _templates(topic) + list(HELDOUT_TEMPLATES)}
    per_topic = {len(CONTENT[t]["items"]) for t in TOPICS}
    n_tasks = sum(len(CONTENT[t]["items"]) for t in TOPICS)
    tips_per_task = [len(tips) for t in TOPICS for _, tips in CONTENT[t]["items"]]
    trained = {task_of[r["prompt"]] for r in sft + prefs}
    unseen = {task_of[r["prompt"]] for r in held if r["split"] == "unseen_task"}
    n_train = len(training_prompts())
    out = ["## Composition", "", "### The recipe in numbers", ""]
    out += _table(["setting", "value"], [
        ["topics", f"{len(TOPICS)}: " + ", ".join(f"`{t}`" for t in TOPICS)],
        ["tasks per topic", f"{_span(sorted(per_topic))}: the first {TRAINED_ITEMS} trained on, the last "
                            f"{HELDOUT_ITEMS} held out, {_span([n - TRAINED_ITEMS - HELDOUT_ITEMS for n in per_topic])}"
                            " in between unused"],
        ["tips per task", _span(tips_per_task)],
        ["training templates per topic", f"{len(GENERIC_TEMPLATES)} generic + "
                                         f"{_span([len(CONTENT[t]['templates']) for t in TOPICS])} of the topic's own"],
        ["templates reserved for held-out prompts", len(HELDOUT_TEMPLATES)],
        ["training prompts (training template x trained task)",
         f"{n_train}; {len({r['prompt'] for r in sft})} of them occur in `sft.jsonl`, "
         f"{len({r['prompt'] for r in prefs})} in `preferences.jsonl`"],
        ["preference margin", f"gold(better) - gold(worse) >= {MIN_MARGIN:g} on every clean pair"],
        ["label noise", f"{LABEL_NOISE_RATE:.1%} of the pairs swapped on purpose"],
    ])
    out += ["", "### Files", ""]
    out += _table(["file", "records", "bytes", "fields"], [
        [f"`{name}.jsonl`", len(data[name]), f"{n_bytes[name]:,}", ", ".join(f"`{k}`" for k in data[name][0])]
        for name in FILES])
    fields = {"prompts (all files)": [r["prompt"] for r in sft + prefs + held],
              "`sft` response": [r["response"] for r in sft], "`preferences` chosen": [r["chosen"] for r in prefs],
              "`preferences` rejected": [r["rejected"] for r in prefs],
              "`heldout` reference": [r["reference"] for r in held], "`pretrain` text": [r["text"] for r in pre],
              "`reviews` text": [r["text"] for r in data["reviews"]]}
    out += ["", "### Lengths (words, split on spaces)", ""]
    lengths = {field: [_words(x) for x in texts] for field, texts in fields.items()}
    out += _table(["field", "min", "median", "mean", "max"], [
        [field, min(n), f"{median(n):g}", f"{mean(n):.1f}", max(n)] for field, n in lengths.items()])
    answers = [x for f, texts in fields.items() if f != "prompts (all files)" and not f.startswith(("`pretrain`", "`reviews`"))
               for x in texts]
    out += ["", f"The longest answer (response, chosen, rejected or reference) has {max(map(len, answers))} "
                f"characters, {max(map(_words, answers))} words.", "", "### Topics", ""]
    counts = {name: Counter(r["topic"] for r in data[name]) for name in QA_FILES}
    out += _table(["topic", *QA_FILES], [[t, *(counts[name][t] for name in QA_FILES)] for t in TOPICS])

    # SFT demonstrations
    out += ["", "## SFT demonstrations", ""]
    rows = []
    for quality in SFT_QUALITY:
        rs = [r for r in sft if r["quality"] == quality]
        friendly = sum(judge.marker_counts(r["response"])["polite"] > 0 for r in rs)
        rows.append([f"`{quality}`", len(rs), f"{len(rs) / len(sft):.0%}", SFT_QUALITY_LOOKS[quality],
                     _span([_words(r["response"]) for r in rs]), _span([_tips_in(r["response"], r["topic"]) for r in rs]),
                     f"{friendly / len(rs):.0%}", f"{mean(gold_score(r['prompt'], r['response']) for r in rs):.3f}"])
    out += _table(["quality", "count", "share", "what it looks like", "words", "tips", "with a friendly phrase",
                   "mean gold score"], rows)

    # Preference pairs
    out += ["", "## Preference pairs", ""]
    rows, worse_mean, clean_ok, noisy_ok, margins = [], {}, 0, 0, []
    for failure, share in FAILURE_SHARES.items():
        rs = [r for r in prefs if r["failure"] == failure]
        better = [r["rejected"] if r["label_noise"] else r["chosen"] for r in rs]
        worse = [r["chosen"] if r["label_noise"] else r["rejected"] for r in rs]
        g_better = [gold_score(r["prompt"], x) for r, x in zip(rs, better, strict=True)]
        g_worse = [gold_score(r["prompt"], x) for r, x in zip(rs, worse, strict=True)]
        for r, b, w in zip(rs, g_better, g_worse, strict=True):
            margins.append(b - w)
            noisy_ok += r["label_noise"] and b - w >= MIN_MARGIN
            clean_ok += not r["label_noise"] and b - w >= MIN_MARGIN
        worse_mean[failure] = mean(g_worse)
        rows.append([failure, f"{share:.0%}", len(rs), sum(r["label_noise"] for r in rs), FAILURE_LOOKS[failure],
                     _span([_words(x) for x in worse]), _span([_tips_in(x, r["topic"]) for r, x in zip(rs, worse,
                                                                                                   strict=True)]),
                     f"{mean(g_better):.3f} / {worse_mean[failure]:.3f}"])
    out += _table(["failure", "share", "pairs", "of which label noise", "the worse answer", "words", "tips",
                   "mean gold: better / worse"], rows)
    noisy = [r for r in prefs if r["label_noise"]]
    easy = [f for f in FAILURES if worse_mean[f] < EASY_WORSE]

    def longer_is_better(failure: str | None) -> str:
        rs = [r for r in prefs if not r["label_noise"] and failure in (None, r["failure"])]
        return f"{sum(_words(r['chosen']) > _words(r['rejected']) for r in rs) / len(rs):.0%}"

    out += ["", f"**Label noise: {len(noisy) / len(prefs):.1%}** ({len(noisy)} of {len(prefs)} pairs, chosen at random, "
                f"in {len({r['failure'] for r in noisy})} of {len(FAILURES)} failure types): on those pairs `chosen` "
                f"is the worse answer, so a reward model can agree with at most about {1 - len(noisy) / len(prefs):.0%} "
                f"of the labels. The gold judge prefers the better answer by at least {MIN_MARGIN:g} on "
                f"{clean_ok} of {len(prefs) - len(noisy)} clean pairs and {noisy_ok} of {len(noisy)} noisy ones "
                f"(smallest margin {min(margins):.3f}).", "",
            f"Easy failures (the worse answer scores under {EASY_WORSE:g} on average): {', '.join(easy)}. "
            f"Subtle ones (both answers on topic): {', '.join(f for f in FAILURES if f not in easy)}. "
            f"The better answer is the longer one in {longer_is_better('rambling')} of the clean rambling pairs, "
            f"{longer_is_better('too_short')} of the clean too_short pairs and {longer_is_better(None)} of all "
            "clean pairs."]

    # Held-out prompts
    out += ["", "## Held-out prompts", ""]
    rows = []
    for split in HELDOUT_SPLITS:
        rs = [r for r in held if r["split"] == split]
        tasks = Counter(r["topic"] for r in {(r["topic"], task_of[r["prompt"]]): r for r in rs}.values())
        rows.append([f"`{split}`", len(rs), _span(list(Counter(r["topic"] for r in rs).values())),
                     f"{_span(list(tasks.values()))} " + ("trained" if split == "seen_task" else "held out"),
                     f"the {len(HELDOUT_TEMPLATES)} reserved" if split == "seen_task" else
                     f"any of {_span([len(_templates(t)) + len(HELDOUT_TEMPLATES) for t in TOPICS])}",
                     f"{mean(gold_score(r['prompt'], r['reference']) for r in rs):.3f}"])
    out += _table(["split", "prompts", "per topic", "tasks per topic", "templates (per topic)",
                   "mean gold of the reference"],
                  rows)
    leaked = {r["prompt"] for r in held} & {r["prompt"] for r in sft + prefs}
    out += ["", f"Held-out prompts that occur in `sft.jsonl` or `preferences.jsonl`: {len(leaked)}. "
                f"Held-out tasks that occur in them, in any phrasing: {len(unseen & trained)}. "
                "The templates reserved for held-out prompts: " + "; ".join(f'"{t}"' for t in HELDOUT_TEMPLATES) + ".",
            "", "The tasks by topic:", ""]
    out += _table(["topic", "trained on", "held out (`unseen_task` prompts only)"], [
        [t, "; ".join(task for task, _ in _items(t, heldout=False)), "; ".join(task for task, _ in _items(t, True))]
        for t in TOPICS])

    out += ["", *_reviews_section(data["reviews"])]

    # The rubric and the scale
    w, p = judge.WEIGHTS, judge.WEIGHTS["polite"]
    lo, hi = judge.TARGET_WORDS
    out += ["", "## The rubric's weights", "", "```text",
            "content = " + " + ".join(f"{v:g} {k}" for k, v in w["content"].items()),
            "style   = " + " + ".join(f"{v:g} {k}" for k, v in w["style"].items()),
            f"total   = content x ({w['total_floor']:g} + {1 - w['total_floor']:g} x style)",
            f"polite  = {p['base']:g} + {p['per_friendly']:g} per friendly phrase (up to {p['friendly_counted']}) "
            f"- {p['per_gushing']:g} per friendly phrase beyond {p['friendly_counted']} - {p['per_rude']:g} per rude "
            "phrase, clipped to [0, 1]",
            f"concise = 1 for {lo}-{hi} words, decaying outside", "```"]
    phrases = (OPENERS + CLOSERS + RUDE_OPENERS + RUDE_CLOSERS + REFUSALS + VAGUE_LINES + FILLERS + SOFT_GENERIC
               + tuple(p for p in REFUSAL_TAILS if p) + tuple(c for t in TOPICS for c in CONTENT[t]["closers"]))
    templates = len(GENERIC_TEMPLATES) + len(HELDOUT_TEMPLATES) + sum(len(CONTENT[t]["templates"]) for t in TOPICS)
    out += ["", "### Scale", "",
            f"{n_tasks} tasks ({len(trained)} trained on, {len(unseen)} held out, the rest unused), {sum(tips_per_task)} tips "
            f"({sum(len(tips) for t in TOPICS for _, tips in _items(t, False))} of them in the training chat data), "
            f"{sum(len(CONTENT[t]['facts']) for t in TOPICS)} facts, {templates} templates and {len(phrases)} other "
            "hand-written phrases."]
    return "\n".join(out) + "\n"


def _reviews_section(reviews: list[dict]) -> list[str]:
    """The datasheet's lines on ``reviews.jsonl`` (notebook 09)."""
    rows = [[label, sum(r["label"] == i for r in reviews), sum(r["mixed"] for r in reviews if r["label"] == i),
             _span([_words(r["text"]) for r in reviews if r["label"] == i])]
            for i, label in enumerate(("negative (0)", "positive (1)"))]
    return ["## Film reviews (notebook 09)", "", *_table(["label", "reviews", "of which mixed", "words"], rows), "",
            f"Each review starts with one of {len(OPENINGS)} neutral openings (the prompts of the sentiment run: "
            + ", ".join(f'"{o}"' for o in OPENINGS) + f"), in turn. A mixed review (a share of {MIXED_SHARE:.0%} is "
            "drawn) has one remark of the other sentiment."]


def datasheet_tables(out_dir: Path | str) -> str:
    """The markdown of the datasheet's generated block (every table and number of ``<out_dir>/README.md``),
    computed from the ``.jsonl`` files in ``out_dir`` and their sizes on disk."""
    paths = {name: Path(out_dir) / f"{name}.jsonl" for name in FILES}
    return _datasheet({name: read_records(p) for name, p in paths.items()},
                      {name: p.stat().st_size for name, p in paths.items()})


def generated_block(text: str) -> str | None:
    """What lies between the generated-block markers of a README's text (None if it has no markers)."""
    start, end = text.find(GENERATED_START), text.find(GENERATED_END)
    if start < 0 and end < 0:
        return None
    if start < 0 or end < start:
        raise ValueError(f"the README must contain {GENERATED_START} and then {GENERATED_END}")
    return text[start + len(GENERATED_START):end].removeprefix("\n")


def with_generated_block(text: str, tables: str) -> str:
    """The README text with its generated block replaced by ``tables`` (unchanged if it has no markers)."""
    if generated_block(text) is None:
        return text
    start, end = text.find(GENERATED_START) + len(GENERATED_START), text.find(GENERATED_END)
    return text[:start] + "\n" + tables + text[end:]


def _readme_texts(out_dir: Path, data: dict[str, list[dict]], texts: dict[str, str]) -> tuple[str, str] | None:
    """``(current, wanted)`` text of ``<out_dir>/README.md`` for the records ``data`` written as ``texts`` (None when
    there is no README; equal texts when it has no markers or its block is up to date)."""
    readme = out_dir / README
    if not readme.exists():
        return None
    old = readme.read_text(encoding="utf-8")
    return old, with_generated_block(old, _datasheet(data, {name: len(texts[name]) for name in FILES}))


def write(out_dir: Path | str, seed: int = 0, **sizes: int) -> dict[str, int]:
    """Generate the dataset and write ``<out_dir>/<name>.jsonl`` for each file. Returns record counts.

    ``sizes`` (``n_sft=...`` etc.) are passed to :func:`generate`; the committed data uses the defaults.
    If ``<out_dir>/README.md`` has the generated-block markers, the block is rewritten (:func:`datasheet_tables`).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = generate(seed, **sizes)
    texts = {name: to_jsonl(data[name]) for name in FILES}
    for name in FILES:
        write_text(out_dir / f"{name}.jsonl", texts[name])  # atomic: temp file, then rename
    readme = _readme_texts(out_dir, data, texts)
    if readme is not None and readme[0] != readme[1]:
        write_text(out_dir / README, readme[1])
    return {name: len(data[name]) for name in FILES}


def check(out_dir: Path | str, seed: int = 0, **sizes: int) -> list[str]:
    """Names of the files in ``out_dir`` that are missing or differ from :func:`generate`'s output, and
    ``README.md`` if its generated block differs from the tables of that output."""
    paths = {name: Path(out_dir) / f"{name}.jsonl" for name in FILES}
    missing = [p.name for p in paths.values() if not p.exists()]
    if missing:  # no need to generate anything
        return missing
    data = generate(seed, **sizes)
    texts = {name: to_jsonl(data[name]) for name in FILES}
    stale = [p.name for name, p in paths.items() if p.read_bytes() != texts[name].encode("ascii")]
    readme = _readme_texts(Path(out_dir), data, texts)
    if readme is not None and readme[0] != readme[1]:
        stale.append(README)
    return stale


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
