"""Labelled film reviews for notebook 09 (sentiment control): ``data/reviews.jsonl``, written with the rest of the
course data by :func:`rlhf_helpers.course_dataset.write`.

A review is ``opening + " " + verdict``, then one to three remarks ("The acting was superb."), maybe a neutral
sentence, and often a closing line ("Avoid it."). Its ``label`` (1 positive, 0 negative, as IMDB's) is the
sentiment of the verdict and the closing line; a ``mixed`` review has one remark of the other sentiment, so a
classifier must weigh the whole review, not spot one word. The openings are neutral: they are the prompts PPO
continues, and the policy, not the prompt, decides the sentiment. The phrases live in ``reviews.json``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

CONTENT = json.loads((Path(__file__).parent / "reviews.json").read_text(encoding="utf-8"))
OPENINGS: list[str] = CONTENT["openings"]
SENTIMENTS = ("negative", "positive")  # index = label, as IMDB's (0 negative, 1 positive)
MIXED_SHARE = 0.25  # reviews with one remark of the other sentiment
CLOSER_SHARE = 0.7  # reviews that end with a closing line
NEUTRAL_SHARE = 0.3  # reviews with a neutral sentence among the remarks
VERBS = ("was", "is", "felt", "seemed")


def review(rng: random.Random, label: int, opening: str) -> tuple[str, bool]:
    """One review of sentiment ``label`` (1 positive, 0 negative) starting with ``opening``: ``(text, mixed)``."""
    mood, other = SENTIMENTS[label], SENTIMENTS[1 - label]
    remarks = [f"The {part} {rng.choice(VERBS)} {rng.choice(CONTENT['adjectives'][mood])}."
               for part in rng.sample(CONTENT["parts"], rng.randint(1, 3))]
    mixed = rng.random() < MIXED_SHARE
    if mixed:
        part = rng.choice([p for p in CONTENT["parts"] if f"The {p} " not in " ".join(remarks)])
        remarks.insert(rng.randint(0, len(remarks)), f"The {part} {rng.choice(VERBS)} "
                                                     f"{rng.choice(CONTENT['adjectives'][other])}.")
    if rng.random() < NEUTRAL_SHARE:
        remarks.insert(rng.randint(0, len(remarks)), rng.choice(CONTENT["neutral"]))
    sentences = [f"{opening} {rng.choice(CONTENT['verdicts'][mood])}", *remarks]
    if rng.random() < CLOSER_SHARE:
        sentences.append(rng.choice(CONTENT["closers"][mood]))
    return " ".join(sentences), mixed


def make_reviews(seed: int, n: int) -> list[dict]:
    """``n`` reviews, half of each label, openings in turn: ``{"text", "label", "opening", "mixed"}``."""
    rng = random.Random(f"{seed}:reviews")
    labels = [i % 2 for i in range(n)]
    rng.shuffle(labels)
    out = []
    for i, label in enumerate(labels):
        opening = OPENINGS[i % len(OPENINGS)]
        text, mixed = review(rng, label, opening)
        out.append({"text": text, "label": label, "opening": opening, "mixed": mixed})
    return out
