"""Notebook 09's module: reviews, prompts, the writer, the classifier, VADER, the PPO settings and the LoRA /
checkpointing table, on a tiny model built from a small copy of the course data (the notebook's own run, with its
bars, is in test_notebooks.py)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from rlhf_helpers import sentiment
from rlhf_helpers.core.artifacts import Paths
from rlhf_helpers.core.config import Profile, SentimentConfig, get_profile
from rlhf_helpers.course_dataset.reviews import OPENINGS, make_reviews

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def review_profile(tmp_path_factory, course_data_dir, tiny_model_config) -> Profile:
    """A tiny profile over the conftest's course data plus 240 course reviews; every run shrunk to seconds."""
    data = tmp_path_factory.mktemp("review_data")
    for f in course_data_dir.glob("*.jsonl"):
        shutil.copy(f, data / f.name)
    write_jsonl(data / "reviews.jsonl", make_reviews(0, 240))
    cfg = SentimentConfig(num_reviews=240, lm_steps=20, classifier_steps=20, classifier_batch_size=16,
                          eval_samples=8, response_length=8, total_updates=2, batch_size=8, mini_batch_size=4,
                          table_updates=2)
    return Profile(name="tiny", model=tiny_model_config, sentiment=cfg,
                   paths=Paths(root=tmp_path_factory.mktemp("review_out"), data_dir=data))


def test_course_reviews_are_split_and_labelled(review_profile):
    reviews = sentiment.load_reviews(review_profile)
    assert (len(reviews.train), len(reviews.test)) == (192, 48)
    texts = [r["text"] for r in reviews.train + reviews.test]
    assert len(set(texts)) == len(texts) == 240 and reviews.source == "course"
    assert {r["label"] for r in reviews.train} == {0, 1}
    assert all(r["text"].startswith(r["opening"]) for r in reviews.train)


@pytest.mark.parametrize(("row", "field"), [({"text": "Fine.", "label": "pos"}, "label"),
                                            ({"text": "  ", "label": 1}, "text"), ({"label": 0}, "text")])
def test_a_bad_review_line_is_refused_by_file_line_and_field(tmp_path, row, field):
    path = write_jsonl(tmp_path / "imdb.jsonl", [{"text": "Great.", "label": 1}, {"text": "Bad.", "label": 0}, row])
    profile = Profile(name="tiny", sentiment=SentimentConfig(dataset=str(path)))
    with pytest.raises(ValueError, match=rf"imdb\.jsonl, line 3: field '{field}'"):
        sentiment.load_reviews(profile)


def test_prompts_are_held_out_openings_or_the_first_tokens_of_a_review(review_profile, tiny_tokenizer):
    cfg = review_profile.sentiment
    reviews = sentiment.load_reviews(review_profile)
    train, held = sentiment.review_prompts(reviews, tiny_tokenizer, cfg)
    assert sorted(train + held) == sorted(OPENINGS) and len(held) == cfg.heldout_openings and not set(train) & set(held)
    with pytest.raises(ValueError, match="heldout_openings"):
        sentiment.review_prompts(reviews, tiny_tokenizer, dataclasses.replace(cfg, heldout_openings=len(OPENINGS)))
    imdb = sentiment.Reviews([{"text": r["text"], "label": r["label"]} for r in reviews.train], reviews.test, "imdb")
    train, held = sentiment.review_prompts(imdb, tiny_tokenizer, dataclasses.replace(cfg, num_prompts=40))
    assert len(train) + len(held) == 40 and len(held) == 8
    texts = [r["text"] for r in imdb.train[:40]]
    for prompt, text in zip(held + train, texts, strict=True):
        assert text.startswith(prompt) and 2 <= len(tiny_tokenizer(prompt)["input_ids"]) <= 8


def test_classifier_training_sees_whole_reviews_and_cut_ones():
    rows = [{"text": "This film was wonderful. I loved it.", "label": 1}, {"text": "Awful.", "label": 0}]
    out = sentiment.with_prefixes(rows, seed=0)
    assert out[0] == rows[0] and out[1]["label"] == 1 and rows[0]["text"].startswith(out[1]["text"])
    assert 4 <= len(out[1]["text"].split()) < len(rows[0]["text"].split())
    assert out[2] == rows[1] and len(out) == 3  # a review of fewer than 5 words is not cut


def test_ppo_settings_continue_plain_text_and_take_changes_last():
    profile = get_profile("tiny")
    cfg = sentiment.sentiment_ppo_config(profile, total_updates=3, use_lora=True)
    assert not cfg.chat_format and cfg.missing_eos_penalty is None and not cfg.fit_response_length
    assert (cfg.total_updates, cfg.use_lora, cfg.kl_coef) == (3, True, profile.sentiment.kl_coef)
    assert cfg.vf_coef == profile.ppo.vf_coef  # the rest is notebook 05's
    assert sentiment.target_label(dataclasses.replace(profile.sentiment, target="negative")) == "NEGATIVE"
    with pytest.raises(ValueError, match="positive' or 'negative"):
        sentiment.target_label(dataclasses.replace(profile.sentiment, target="happy"))


def test_vader_reads_the_sentiment_of_the_whole_review():
    vader = sentiment.VaderScore()
    scores = vader.score(["This film", "This film"], ["was wonderful. I loved it.", "was awful. I hated it."])
    assert scores[0] > sentiment.VADER_THRESHOLD and scores[1] < -sentiment.VADER_THRESHOLD
    assert vader.compound(["This film was wonderful. I loved it."]) == [pytest.approx(float(scores[0]))]


def test_writer_classifier_ppo_and_the_efficiency_table(review_profile):
    """The notebook's pipeline in miniature: the writer is the base trained further (its weights move), the
    classifier is tested on held-out reviews, the PPO run logs VADER, and the table has one row per variant with
    LoRA training a minority of the weights and checkpointing keeping fewer activations for backward."""
    import torch

    from rlhf_helpers.core import base_model

    reviews = sentiment.load_reviews(review_profile)
    base, _ = base_model.load_base(review_profile, progress=False)
    writer, tokenizer, info = sentiment.review_writer(review_profile, reviews, progress=False)
    assert info["steps"] == 20 and not torch.equal(writer.transformer.wte.weight, base.transformer.wte.weight)
    classifier, clf = sentiment.sentiment_classifier(review_profile, reviews, progress=False)
    assert clf["test_reviews"] == 48 and 0 <= clf["test_accuracy"] <= 1 and classifier.name.endswith(":positive")
    prompts, held = sentiment.review_prompts(reviews, tokenizer, review_profile.sentiment)
    run = sentiment.train_sentiment(writer, tokenizer, classifier, prompts,
                                    sentiment.sentiment_ppo_config(review_profile), callbacks=[], progress=False)
    assert len(run.history) == 2 and all(-1 <= r["objective/vader"] <= 1 for r in run.history)
    table = sentiment.efficiency_table(writer, tokenizer, classifier, prompts, held, review_profile, progress=False)
    assert list(table.index) == ["full", "full + checkpointing", "LoRA", "LoRA + checkpointing"]
    assert (table.loc["LoRA", "trainable_share"] < 0.5 * table.loc["full", "trainable_share"]
            and table.loc["full", "trainable_share"] > 0.99)
    for name in ("full", "LoRA"):
        assert table.loc[f"{name} + checkpointing", "activations_mb"] < table.loc[name, "activations_mb"]
    assert (table.s_per_update > 0).all() and table.reward_gain.notna().all() and (table.precision == "no").all()
    only = sentiment.efficiency_table(writer, tokenizer, classifier, prompts, held, review_profile, progress=False,
                                      only=["LoRA"])
    assert list(only.index) == ["LoRA"] and only.loc["LoRA", "trainable_params"] == table.loc["LoRA", "trainable_params"]
    with pytest.raises(ValueError, match="unknown variant"):
        sentiment.efficiency_table(writer, tokenizer, classifier, prompts, held, review_profile, progress=False,
                                   only=["QLoRA"])
    # the exercises' rewards: the same weights relabelled, and TRL's raw logit instead of the log-odds
    texts = ["This film was wonderful. I loved it.", "This film was awful. I hated it.", "This film"]
    classifier.tokenizer.padding_side = "left"  # as a generating tokenizer's: scoring pads right all the same
    logits = classifier.logits(texts)
    assert logits.shape == (3, 2) and classifier.tokenizer.padding_side == "left"
    assert torch.allclose(logits[2], classifier.logits(texts[2:])[0], atol=1e-5)  # batch padding changes nothing
    negative = sentiment.with_label(classifier, "NEGATIVE")
    assert negative.model is classifier.model and negative.name.endswith(":negative")
    assert torch.allclose(negative.log_odds(texts), -classifier.log_odds(texts), atol=1e-5)
    assert torch.allclose(classifier.log_odds(texts), logits[:, 1] - logits[:, 0], atol=1e-5)
    raw = sentiment.with_label(classifier, "POSITIVE", sentiment.RawLogitSource)
    assert isinstance(raw, sentiment.RawLogitSource)
    assert torch.allclose(raw.score(["This film"] * 2, ["was wonderful.", "was awful."]),
                          classifier.logits(["This film was wonderful.", "This film was awful."])[:, 1])
    assert torch.allclose(raw.log_odds(texts)[2:], raw.log_odds(texts[2:]), atol=1e-5)


def test_word_shift_ranks_the_words_a_policy_reaches_for():
    import pandas as pd

    samples = pd.DataFrame({"policy": ["writer", "writer", "PPO", "PPO"],
                            "continuation": ["was dull. The acting was poor.", "was fine.",
                                             "was great. Great acting!", "was great."]})
    shift = sentiment.word_shift(samples, "writer", "PPO", n=2)
    assert list(shift.index) == ["great", "acting"]  # "was": 3 of 8 words before, 2 of 6 after: its rate fell
    assert shift.loc["great", "before"] == 0 and shift.loc["great", "after"] == pytest.approx(3 / 6 * 1000)
    assert list(shift.columns) == ["before", "after", "change"] and len(shift) == 2
    with pytest.raises(ValueError, match="no continuation of policy 'LoRA'"):
        sentiment.word_shift(samples, "writer", "LoRA")


def test_unseen_word_share_counts_words_the_reviews_never_use():
    known = ["The film was wonderful.", "I hated it."]
    assert sentiment.unseen_word_share(["The film was beautififul."], known) == pytest.approx(1 / 4)
    assert sentiment.unseen_word_share(["I hated the film!"], known) == 0.0
    with pytest.raises(ValueError, match="no words"):
        sentiment.unseen_word_share(["..."], known)
