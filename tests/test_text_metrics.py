"""Text metrics (rlhf_helpers.core.text_metrics): the shipped metric modules against their reference
implementations, the win rate with its bootstrap interval, distinct-n."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rlhf_helpers.core import text_metrics as tm

PREDICTIONS = [
    "The cat sat on the mat.",
    "Boil the pasta in salted water, then drain it.",
    "hello there general kenobi",
    "Water the plants every morning; check the soil first!",
    "",
]
REFERENCES = [
    "A cat sat on the mat.",
    "Cook the pasta in plenty of salted, boiling water and drain it.",
    "hello there",
    "Check the soil before you water the plants.",
    "An answer the model did not give.",
]


# ------------------------------------------------------------------------------------------- ROUGE / BLEU
def test_rouge_is_identical_to_rouge_score():
    from rouge_score import rouge_scorer

    got = tm.rouge_scores(PREDICTIONS, REFERENCES)
    scorer = rouge_scorer.RougeScorer(list(tm.ROUGE_TYPES))
    for key in tm.ROUGE_TYPES:
        want = np.mean([scorer.score(r, p)[key].fmeasure for p, r in zip(PREDICTIONS, REFERENCES, strict=True)])
        assert got[key] == want, key  # identical, not just close
    assert set(got) == set(tm.ROUGE_TYPES)
    assert tm.rouge_scores(REFERENCES, REFERENCES) == {k: 1.0 for k in tm.ROUGE_TYPES}


def test_rouge_module_keeps_the_hub_interface():
    rouge = tm.load_metric("rouge")
    assert tm.load_metric("rouge") is rouge  # cached per process
    per_example = rouge.compute(predictions=PREDICTIONS, references=REFERENCES, use_aggregator=False,
                                rouge_types=["rouge1"])
    assert list(per_example) == ["rouge1"] and len(per_example["rouge1"]) == len(PREDICTIONS)
    # several references per example: each example keeps its best reference
    multi = rouge.compute(predictions=["hello there"], references=[["general kenobi", "hello there"]])
    assert multi["rouge1"] == 1.0
    with pytest.raises(ValueError, match="No metric module 'nope'"):
        tm.load_metric("nope")


def test_bleu_matches_nltk_corpus_bleu_and_a_hand_computed_case():
    from nltk.translate.bleu_score import corpus_bleu

    from rlhf_helpers.core.metrics.bleu.tokenizer_13a import Tokenizer13a

    tok = Tokenizer13a()
    assert tok("Boil it, then wait 3.5 minutes.") == ["Boil", "it", ",", "then", "wait", "3.5", "minutes", "."]
    preds, refs = PREDICTIONS[:4], REFERENCES[:4]
    got = tm.bleu_score(preds, refs)
    # one reference per example and no smoothing: nltk's corpus_bleu is the same definition
    want = corpus_bleu([[tok(r)] for r in refs], [tok(p) for p in preds])
    assert got["bleu"] == pytest.approx(want, rel=1e-12) and 0 < got["bleu"] < 1
    assert got["translation_length"] == sum(len(tok(p)) for p in preds)

    # by hand: "the cat sat on mat" (5 tokens) vs "the cat sat on the mat" (6): clipped matches 5/5, 3/4
    # ("on mat" is not in the reference), 2/3, 1/2; brevity penalty exp(1 - 6/5)
    hand = tm.bleu_score(["the cat sat on mat"], ["the cat sat on the mat"])
    assert hand["precisions"] == [1.0, 3 / 4, 2 / 3, 1 / 2]
    bp = math.exp(1 - 6 / 5)
    assert hand["brevity_penalty"] == pytest.approx(bp, rel=1e-12)
    assert hand["bleu"] == pytest.approx((1.0 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25 * bp, rel=1e-12)
    smooth = tm.bleu_score(["the cat sat on mat"], ["the cat sat on the mat"], smooth=True)  # add one
    assert smooth["bleu"] == pytest.approx((6 / 6 * 4 / 5 * 3 / 4 * 2 / 3) ** 0.25 * bp, rel=1e-12)
    # clipping: "the the the" matches "the" only as often as the reference has it (twice)
    assert tm.bleu_score(["the the the"], ["the cat sat on the mat"], smooth=True)["precisions"][0] == 3 / 4
    assert tm.bleu_score(["too short"], ["the cat sat on the mat"])["bleu"] == 0.0  # no 3- or 4-grams
    assert tm.bleu_score(refs, refs)["bleu"] == pytest.approx(1.0)


def test_metric_inputs_are_checked():
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        tm.rouge_scores(["a", "b"], ["a"])
    with pytest.raises(TypeError, match="lists of strings"):
        tm.bleu_score("a b", "a b")


# ------------------------------------------------------------------------------------------- statistics
def test_win_rate_counts_ties_as_half_and_bootstraps_a_seeded_interval():
    w = tm.win_rate([3, 2, 1, 1], [1, 2, 3, 0], n_boot=500, seed=0)
    assert (w["win_rate"], w["wins"], w["ties"], w["losses"], w["n"]) == (0.625, 2, 1, 1, 4)
    assert 0 <= w["low"] <= w["win_rate"] <= w["high"] <= 1
    assert tm.win_rate([3, 2, 1, 1], [1, 2, 3, 0], n_boot=500, seed=0) == w  # seeded: reproducible
    assert tm.win_rate([1, 2], [1, 2]) | {} == {"win_rate": 0.5, "low": 0.5, "high": 0.5, "wins": 0, "ties": 2,
                                                "losses": 0, "n": 2}
    assert tm.win_rate([2, 2, 2], [1, 1, 1])["low"] == 1.0
    # on many prompts the bootstrap interval matches the normal approximation of a proportion
    rng = np.random.default_rng(1)
    outcome = rng.random(400) < 0.7
    w = tm.win_rate(outcome.astype(float), np.full(400, 0.5), n_boot=2000, seed=3)
    half = 1.96 * math.sqrt(w["win_rate"] * (1 - w["win_rate"]) / 400)
    assert w["high"] - w["low"] == pytest.approx(2 * half, rel=0.1)
    with pytest.raises(ValueError, match="same length"):
        tm.win_rate([1, 2], [1])


def test_distinct_n():
    assert tm.distinct_n(["a b c", "d e"], 1) == 1.0
    assert tm.distinct_n(["the cat the cat", "The cat"], 1) == 2 / 6  # lower-cased words
    assert tm.distinct_n(["the cat the cat", "The cat"], 2) == 2 / 4  # "the cat" x3, "cat the" x1
    assert tm.distinct_n(["", "one"], 2) == 0.0  # no bigram at all
    with pytest.raises(ValueError):
        tm.distinct_n(["a"], 0)
