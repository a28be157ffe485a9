"""Reward modelling (rlhf_helpers.reward): training, the text convention shared by trainer and scorer,
normalisation, saving/loading, the regression variant, and every reward source.

One small reward model is trained once per module (``trained``): a tokenizer and an untrained 2-layer GPT-2
built from a subset of the committed course data, trained with TRL's RewardTrainer on pairs of the failure
types a from-scratch model can learn in seconds. The tests that need a trained model share it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from pathlib import Path

import pandas as pd
import pytest
import torch

from rlhf_helpers import judge, reward
from rlhf_helpers.core import base_model, chat, loading
from rlhf_helpers.core.artifacts import LOG_HISTORY, REPO_ROOT, MissingStageError, Paths
from rlhf_helpers.core.config import ModelConfig, RewardConfig, get_profile

FAILURES = ("refusal", "rude", "rambling", "repetitive", "vague")  # learnable from the answer alone


def _course_pairs() -> list[dict]:
    with open(REPO_ROOT / "data" / "preferences.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def pairs():
    """Train/test pairs with disjoint prompts (seeded), from the committed course data."""
    from datasets import Dataset

    rows = [r for r in _course_pairs() if r["failure"] in FAILURES]
    prompts = sorted({r["prompt"] for r in rows})
    random.Random(0).shuffle(prompts)
    test_prompts = set(prompts[: len(prompts) // 8])
    train = [r for r in rows if r["prompt"] not in test_prompts][:640]
    test = [r for r in rows if r["prompt"] in test_prompts][:160]
    return Dataset.from_list(train), Dataset.from_list(test)


@pytest.fixture(scope="module")
def rm_tokenizer(pairs):
    texts = [f"{chat.HUMAN_PREFIX}{r['prompt']}{chat.ASSISTANT_PREFIX} {r[k]}"
             for r in pairs[0] for k in ("chosen", "rejected")]
    return base_model.train_tokenizer(texts, vocab_size=768, model_max_length=256)


RM_MODEL = ModelConfig(vocab_size=768, n_layer=2, n_head=2, n_embd=64, n_positions=256)
RM_CFG = RewardConfig(learning_rate=3e-3, max_steps=40, per_device_train_batch_size=16, logging_steps=5,
                      eval_steps=20, max_length=256, warmup_ratio=0.1, seed=0)


def _fresh_rm(tokenizer, seed: int = 0):
    """An untrained tiny GPT-2 with a fresh scalar head (GPT2ForSequenceClassification, num_labels=1)."""
    from transformers import GPT2ForSequenceClassification

    lm = base_model.build_tiny_model(RM_MODEL, tokenizer, seed=seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2ForSequenceClassification(dataclasses.replace(lm.config, num_labels=1))
    model.transformer.load_state_dict(lm.transformer.state_dict())
    model.config.pad_token_id = tokenizer.pad_token_id
    return model.eval()


@pytest.fixture(scope="module")
def trained(pairs, rm_tokenizer):
    train, test = pairs
    model = _fresh_rm(rm_tokenizer)
    before = reward.score_pairs(reward.RewardModelSource(model, rm_tokenizer), test, judge_scores=None)
    run = reward.train_reward_model(model, rm_tokenizer, train, RM_CFG, eval_pairs=test.select(range(32)),
                                    progress=False)
    return run, before


# ------------------------------------------------------------------------------------------- training
def test_training_raises_heldout_accuracy_far_above_chance(trained, pairs):
    run, before = trained
    after = reward.score_pairs(reward.RewardModelSource(run.model, run.tokenizer), pairs[1], judge_scores=None)
    table = reward.accuracy_table(before, after)
    assert table.loc["clean pairs", "after %"] >= 85  # a fresh head is at chance (expected 50%)
    assert table.loc["clean pairs", "after %"] >= table.loc["clean pairs", "before %"] + 20
    assert run.dropped == {"train": 0, "eval": 0}
    evals = [h["eval_accuracy"] for h in run.history if "eval_accuracy" in h]
    assert evals[0] < evals[-1] and len(evals) >= 2  # step 0 (fresh head) ... the trained model
    assert any("loss" in h for h in run.history)


def test_reward_trainer_drops_long_pairs_and_we_count_them(pairs, rm_tokenizer):
    train = pairs[0].select(range(64))
    lengths = [max(len(rm_tokenizer(chat.format_example(rm_tokenizer, r["prompt"], r[k]))["input_ids"])
                   for k in ("chosen", "rejected")) for r in train]
    limit = sorted(lengths)[len(lengths) // 2]  # the median: about half the pairs are too long
    cfg = dataclasses.replace(RM_CFG, max_steps=1, max_length=limit)
    expected = sum(n > limit for n in lengths)
    assert 0 < expected < len(train)
    run = reward.train_reward_model(_fresh_rm(rm_tokenizer), rm_tokenizer, train, cfg, progress=False)
    assert run.dropped["train"] == expected and run.pairs["train"] == 64
    assert "dropped" in run.summary()


def test_lora_option_trains_adapters_and_head_then_merges(pairs, rm_tokenizer):
    model = _fresh_rm(rm_tokenizer)
    cfg = dataclasses.replace(RM_CFG, max_steps=2, use_lora=True, lora_r=4)
    trainer = reward.build_trainer(model, rm_tokenizer, pairs[0].select(range(32)), cfg, progress=False)
    trainable, total = loading.parameter_counts(trainer.model)
    names = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable < total / 4 and any("lora_" in n for n in names) and any("score" in n for n in names)
    run = reward.train_reward_model(_fresh_rm(rm_tokenizer), rm_tokenizer, pairs[0].select(range(32)), cfg,
                                    progress=False)
    assert type(run.model).__name__ == "GPT2ForSequenceClassification"  # merged: a plain model to save


def test_margin_option_needs_and_uses_a_margin_column(pairs, rm_tokenizer):
    train = pairs[0].select(range(16))
    cfg = dataclasses.replace(RM_CFG, use_margin=True, max_steps=1)
    with pytest.raises(ValueError, match="margin"):
        reward.build_trainer(_fresh_rm(rm_tokenizer), rm_tokenizer, train, cfg, progress=False)
    with_margin = reward.add_gold_margins(train, scale=2.0)
    assert all(m >= 0 for m in with_margin["margin"]) and max(with_margin["margin"]) > 0
    trainer = reward.build_trainer(_fresh_rm(rm_tokenizer), rm_tokenizer, with_margin, cfg, progress=False)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    assert torch.allclose(batch["margin"], torch.tensor(with_margin["margin"][:4]))


# ------------------------------------------------------------------------------ the EOS convention
def test_scorer_sees_exactly_what_the_trainer_saw(trained, pairs):
    """The trap: a trainer that appends EOS and a scorer that does not. Our scorer's score of a pair equals
    the model's output on the trainer's own collated batch, and the trainer's tokens decode to format_example."""
    run, _ = trained
    tok = run.tokenizer
    test = pairs[1].select(range(6))
    trainer = reward.build_trainer(run.model, tok, test, RM_CFG, progress=False)
    rows = [trainer.train_dataset[i] for i in range(len(test))]
    for row, rec in zip(rows, test, strict=True):
        assert tok.decode(row["chosen_ids"]) == chat.format_example(tok, rec["prompt"], rec["chosen"])
        assert row["chosen_ids"][-1] == tok.eos_token_id
    batch = trainer.data_collator(rows)
    run.model.eval()
    with torch.no_grad():
        logits = run.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, 0]
    source = reward.RewardModelSource(run.model, tok, batch_size=4)
    chosen = source.score(test["prompt"], test["chosen"])
    rejected = source.score(test["prompt"], test["rejected"])
    assert torch.allclose(torch.cat([chosen, rejected]), logits, atol=1e-5)
    # the same answers scored without the EOS get other scores: the convention matters
    no_eos = [chat.format_prompt(tok, p) + " " + c for p, c in zip(test["prompt"], test["chosen"], strict=True)]
    assert not torch.allclose(source.raw_scores_of_ids(tok(no_eos)["input_ids"]), chosen, atol=1e-3)


def test_scores_do_not_depend_on_batching_or_order(trained, pairs):
    run, _ = trained
    test = pairs[1].select(range(20))
    one = reward.RewardModelSource(run.model, run.tokenizer, batch_size=1).score(test["prompt"], test["rejected"])
    many = reward.RewardModelSource(run.model, run.tokenizer, batch_size=64).score(test["prompt"], test["rejected"])
    assert one.dtype == torch.float32 and one.shape == (20,) and one.device.type == "cpu"
    assert torch.allclose(one, many, atol=1e-5)


def test_long_texts_are_cut_on_the_left_keeping_the_eos(trained):
    run, _ = trained
    source = reward.RewardModelSource(run.model, run.tokenizer, max_length=16)
    ids = source.encode(source.texts(["hi"], ["word " * 50]))
    assert len(ids[0]) == 16 and ids[0][-1] == run.tokenizer.eos_token_id and source.num_truncated == 1
    assert source.score(["hi"], ["short"]).shape == (1,)


def test_tokenizer_with_pad_equal_to_eos_gets_its_own_pad(tmp_path, rm_tokenizer):
    """gpt2 has pad == eos: the head would read the token before the EOS. load_reward_tokenizer adds <|pad|>."""
    rm_tokenizer.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    config["pad_token"] = config["eos_token"]
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    tok = reward.load_reward_tokenizer(tmp_path)
    assert tok.pad_token_id != tok.eos_token_id and tok.pad_token == reward.PAD_TOKEN
    model = _fresh_rm(rm_tokenizer)
    model.config.pad_token_id = model.config.eos_token_id
    bad = loading.load_tokenizer(tmp_path)
    assert bad.pad_token_id == bad.eos_token_id
    with pytest.raises(ValueError, match="pad token == eos"):
        reward.RewardModelSource(model, bad)


def test_trainer_dataset_joins_to_format_example(rm_tokenizer, pairs):
    ds = reward.trainer_dataset(pairs[1].select(range(3)), rm_tokenizer)
    assert ds.column_names == ["prompt", "chosen", "rejected"]
    for row, rec in zip(ds, pairs[1].select(range(3)), strict=True):
        assert row["prompt"] + row["rejected"] == chat.format_example(rm_tokenizer, rec["prompt"], rec["rejected"])
    with pytest.raises(ValueError, match="chosen"):
        reward.trainer_dataset(pairs[1].remove_columns("chosen"), rm_tokenizer)


# --------------------------------------------------------------------- normalisation, saving, loading
def test_normalization_puts_references_at_mean_0_std_1(trained, pairs):
    run, _ = trained
    source = reward.RewardModelSource(run.model, run.tokenizer)
    prompts, refs = pairs[1]["prompt"][:40], pairs[1]["chosen"][:40]
    raw = source.raw_scores(prompts, refs)
    norm = reward.fit_normalization(source, prompts, refs)
    scores = source.score(prompts, refs).double()
    assert abs(float(scores.mean())) < 1e-4 and abs(float(scores.std(unbiased=False)) - 1) < 1e-4
    assert norm.n == 40 and not math.isclose(norm.std, 1.0) and torch.allclose(source.raw_scores(prompts, refs), raw)
    source.normalize = False
    assert torch.allclose(source.score(prompts, refs), raw)


def test_save_and_load_round_trip(trained, pairs, tmp_path):
    run, _ = trained
    source = reward.RewardModelSource(run.model, run.tokenizer)
    reward.fit_normalization(source, pairs[1]["prompt"][:20], pairs[1]["chosen"][:20])
    profile = get_profile("tiny", paths=Paths(root=tmp_path, data_dir=REPO_ROOT / "data"))
    with pytest.raises(MissingStageError, match="04_reward_modeling"):
        reward.load_reward_source(profile)
    target = reward.save_reward_model(run.model, run.tokenizer, profile.paths.checkpoint("reward"),
                                      source.normalization, run.history, {"score_max_length": 200})
    assert sorted(p.name for p in target.parent.iterdir()) == ["reward"]  # no temporary directory left behind
    info = reward.read_reward_info(target)
    assert info["normalization"]["n"] == 20 and info["score_max_length"] == 200
    assert json.loads((target / LOG_HISTORY).read_text()) == json.loads(json.dumps(run.history))
    loaded = reward.load_reward_source(profile, device="cpu")
    assert isinstance(loaded, reward.RewardSource) and loaded.max_length == 200
    test = pairs[1].select(range(10))
    assert torch.allclose(loaded.score(test["prompt"], test["chosen"]), source.score(test["prompt"], test["chosen"]),
                          atol=1e-5)


# -------------------------------------------------------------------------------------- regression
def test_regression_loss_falls(pairs, rm_tokenizer):
    records = reward.scored_records(pairs[0].select(range(128)))
    assert len(records) == 256 and all(0 <= r["score"] <= 1 for r in records)
    cfg = dataclasses.replace(RM_CFG, regression_steps=30, logging_steps=5, learning_rate=2e-3)
    run = reward.train_regression_model(_fresh_rm(rm_tokenizer), rm_tokenizer, records, cfg, progress=False)
    losses = [h["loss"] for h in run.history if "loss" in h]
    assert len(losses) == 6 and losses[-1] < 0.5 * losses[0]
    assert run.model.config.problem_type == "regression"


# ------------------------------------------------------------------------------------- evaluation
def test_accuracy_tables_and_gold_agreement_on_hand_made_scores():
    df = pd.DataFrame({"prompt": ["How do I cook rice?"] * 4, "chosen": ["a", "b", "c", "d"],
                       "rejected": ["e", "f", "g", "h"], "failure": ["rude", "rude", "vague", "vague"],
                       "label_noise": [False, False, False, True],
                       "rm_chosen": [2.0, 0.0, 1.0, 0.0], "rm_rejected": [1.0, 1.0, 0.0, 1.0],
                       "gold_chosen": [0.9, 0.8, 0.7, 0.1], "gold_rejected": [0.1, 0.2, 0.3, 0.6]})
    df["correct"] = df.rm_chosen > df.rm_rejected
    df["agrees_with_gold"] = (df.rm_chosen > df.rm_rejected) == (df.gold_chosen > df.gold_rejected)
    acc = reward.accuracy_by_group(df)["accuracy"]
    assert acc["all pairs"] == 50 and acc["clean pairs"] == pytest.approx(200 / 3)
    assert acc["flipped pairs (label noise)"] == 0 and acc["clean: rude"] == 50 and acc["clean: vague"] == 100
    agreement = reward.gold_agreement(df)
    assert agreement["pair_agreement %"] == 75 and -1 <= agreement["spearman"] <= 1
    both = reward.accuracy_table(df, df.assign(correct=True))
    assert list(both.columns) == ["pairs", "before %", "after %"] and both.loc["all pairs", "after %"] == 100


def test_score_pairs_columns_with_a_programmatic_source():
    df = reward.score_pairs(reward.LengthReward(), pd.DataFrame(
        {"prompt": ["How do I cook rice?"], "chosen": ["Rinse it."], "rejected": ["Rinse the rice well first."]}))
    assert df.loc[0, "rm_chosen"] > df.loc[0, "rm_rejected"] and bool(df.loc[0, "correct"])
    assert {"gold_chosen", "gold_rejected", "agrees_with_gold", "rm_margin"} <= set(df.columns)


def test_a_given_judge_replaces_the_gold_rubric_in_pairs_fool_table_and_ratings():
    """On Hub data the notebooks pass the profile's judge (its scores()): every judge column then comes from it."""
    def by_length(prompts, responses):  # a judge that likes long answers (the rubric does not)
        return [float(len(r)) for r in responses]

    pairs = pd.DataFrame({"prompt": ["How do I cook rice?"] * 2, "chosen": ["Rinse it.", "Boil, then rest it."],
                          "rejected": ["Rinse the rice well first.", "Rest."]})
    df = reward.score_pairs(reward.LengthReward(), pairs, judge_scores=by_length)
    assert df["gold_chosen"].tolist() == [9.0, 19.0] and df["agrees_with_gold"].tolist() == [False, False]  # brevity RM
    records = reward.scored_records(pairs, judge_scores=by_length)
    assert [r["score"] for r in records] == [9.0, 26.0, 19.0, 5.0] and records[1]["response"] == pairs.rejected[0]
    table = reward.fool_table(reward.LengthReward(), ["How do I cook rice?"], ["Rinse it and simmer."], ["Fix it."],
                              judge_scores=by_length)
    assert table.loc["repeated 3x", "gold prefers it %"] == 100  # the length judge, not the rubric


# ------------------------------------------------------------------------------ programmatic rewards
def _one(source, response: str, prompt: str = "How do I cook rice?") -> float:
    out = source.score([prompt], [response])
    assert out.dtype == torch.float32 and out.shape == (1,)
    return float(out[0])


def test_length_rewards():
    assert _one(reward.LengthReward(), "one two three four five") == pytest.approx(-5 / 50)
    assert _one(reward.LengthReward(), "one") > _one(reward.LengthReward(), "one two three")
    target = reward.LengthReward(target=4)
    assert _one(target, "a b c d") == 0 and _one(target, "a b") == pytest.approx(-0.5)
    assert _one(target, "a b c d e f") == pytest.approx(-0.5) and target.name == "length~4"
    with pytest.raises(ValueError):
        reward.LengthReward(target=0)


def test_lexicon_sentiment():
    s = reward.LexiconSentimentReward()
    assert _one(s, "Great, wonderful!") == 1.0 and _one(s, "This is terrible.") == pytest.approx(-1 / 3)
    assert _one(s, "The pot is on the stove.") == 0.0 and _one(s, "") == 0.0
    assert _one(s, "good but bad") == 0.0


def test_politeness():
    p = reward.PolitenessReward()
    assert _one(p, "Happy to help! Rinse the rice. Good luck!") == 2.0
    assert _one(p, "Happy to help! Great question! Thank you! Good luck!") == 2.0  # capped
    assert _one(p, "Ugh, obviously you rinse it.") == -2.0 and _one(p, "Rinse the rice.") == 0.0


def test_repetition_penalty():
    r = reward.RepetitionPenalty(n=3)
    assert _one(r, "rinse the rice then cook it slowly") == 0.0
    assert _one(r, "cook the rice " * 4) == pytest.approx(3 / 10 - 1)
    assert _one(r, "too short") == 0.0


def test_word_and_token_frequency(rm_tokenizer):
    w = reward.WordFrequencyReward(["rice", "pot"])
    assert _one(w, "Rice in a pot.") == 0.5 and _one(w, "Nothing here.") == 0.0
    token = rm_tokenizer.convert_ids_to_tokens(rm_tokenizer(" the")["input_ids"])[0]
    t = reward.WordFrequencyReward([token], per="token", tokenizer=rm_tokenizer)
    ids = rm_tokenizer("rinse the rice in the pot", add_special_tokens=False)["input_ids"]
    assert _one(t, "rinse the rice in the pot") == pytest.approx(2 / len(ids))
    with pytest.raises(ValueError):
        reward.WordFrequencyReward([])
    with pytest.raises(ValueError, match="tokenizer"):
        reward.WordFrequencyReward(["x"], per="token")


def test_weighted_sum():
    length, polite = reward.LengthReward(), reward.PolitenessReward()
    total = reward.WeightedSum([(length, 2.0), (polite, -0.5)])
    prompts, responses = ["q", "q", "q"], ["Good luck!", "a b c d", "Ugh."]
    expected = 2.0 * length.score(prompts, responses) - 0.5 * polite.score(prompts, responses)
    assert torch.allclose(total.score(prompts, responses), expected)
    assert total.name == "2*brevity + -0.5*politeness"
    assert set(total.components(prompts, responses)) == {"brevity", "politeness"}
    with pytest.raises(ValueError):
        reward.WeightedSum([])
    with pytest.raises(ValueError, match="prompts"):
        total.score(["q"], ["a", "b"])


def test_every_source_fits_the_interface(trained):
    run, _ = trained
    sources = [reward.RewardModelSource(run.model, run.tokenizer), reward.LengthReward(target=10),
               reward.LexiconSentimentReward(), reward.PolitenessReward(), reward.RepetitionPenalty(),
               reward.WordFrequencyReward(["rice"]), judge.GoldJudge()]
    sources.append(reward.WeightedSum([(s, 1.0) for s in sources]))
    for s in sources:
        assert isinstance(s, reward.RewardSource) and isinstance(s.name, str)
        out = s.score(["How do I cook rice?"] * 2, ["Rinse the rice.", "Ugh."])
        assert out.shape == (2,) and out.dtype == torch.float32 and out.device.type == "cpu"


def test_classifier_source_scores_the_log_odds_of_its_label(tmp_path, rm_tokenizer):
    """A sentiment classifier as reward (lvwerra/distilbert-imdb on Colab, notebook 09's tiny one offline), here a
    local 3-label classifier: the score is log p(label) - log(1 - p(label)), so shifting every logit by the same
    amount changes nothing."""
    from transformers import GPT2Config, GPT2ForSequenceClassification

    labels = {0: "NEGATIVE", 1: "POSITIVE", 2: "NEUTRAL"}
    config = GPT2Config(vocab_size=len(rm_tokenizer), n_positions=64, n_embd=32, n_layer=1, n_head=2,
                        num_labels=3, id2label=labels, label2id={v: k for k, v in labels.items()},
                        pad_token_id=rm_tokenizer.pad_token_id)
    torch.manual_seed(0)
    GPT2ForSequenceClassification(config).save_pretrained(tmp_path)
    rm_tokenizer.save_pretrained(tmp_path)
    source = reward.ClassifierSource.from_pretrained(str(tmp_path), "positive", device="cpu", max_length=64,
                                                     include_prompt=True)
    source.tokenizer.padding_side = "left"  # the course's tokenizers pad left, for generation
    scores = source.score(["q", "q"], ["Great rice!", "Bad"])
    with torch.no_grad():  # each text alone, unpadded: its score must not depend on the rest of its batch
        p = torch.cat([source.model(**source.tokenizer([t], return_tensors="pt")).logits.softmax(-1)[:, 1]
                       for t in ["q Great rice!", "q Bad"]])
    assert torch.allclose(scores, (p / (1 - p)).log(), atol=1e-4) and source.name.endswith(":positive")
    assert source.tokenizer.padding_side == "left"  # restored
    assert torch.allclose(source.probabilities(["q Great rice!", "q Bad"]), p, atol=1e-5)
    source.model.score.register_forward_hook(lambda module, args, out: out + 5.0)  # every logit up by 5
    assert torch.allclose(source.score(["q", "q"], ["Great rice!", "Bad"]), scores, atol=1e-4)
    with pytest.raises(ValueError, match="label"):
        reward.ClassifierSource.from_pretrained(str(tmp_path), "JOY", device="cpu")


# ------------------------------------------------------------------------------------ blind spots
def test_fool_table_compares_reward_and_gold():
    prompts = ["How do I cook fluffy rice?", "How do I fix a leaky faucet?"]
    refs = ["Happy to help! Rinse the rice, use a tight lid, and let it rest for 10 minutes after cooking.",
            "Sure! Turn off the water, replace the worn washer or cartridge, and tighten the faucet handle."]
    variants = reward.fool_variants(prompts[0], refs[0], refs[1])
    assert variants["repeated 3x"] == " ".join([refs[0]] * 3) and variants["off-topic answer"] == refs[1]
    table = reward.fool_table(reward.LengthReward(), prompts, refs, refs[::-1])
    assert table.loc["reference", "RM prefers it %"] == 0 and table.loc["repeated 3x", "RM prefers it %"] == 0
    assert table.loc["polite, no content", "RM prefers it %"] == 100  # brevity loves an empty answer...
    assert table.loc["polite, no content", "gold prefers it %"] == 0  # ...the gold judge does not
    assert table.loc["polite, no content", "RM fooled %"] == 100
    assert table.loc["off-topic answer", "gold score"] < table.loc["reference", "gold score"]


def test_missing_sft_checkpoint_names_notebook_02(tmp_path):
    profile = get_profile("tiny", paths=Paths(root=tmp_path, data_dir=REPO_ROOT / "data"))
    with pytest.raises(MissingStageError, match="02_sft_full"):
        reward.backbone_source(profile)
    assert reward.backbone_source(profile, "gpt2") == "gpt2"
    assert isinstance(reward.backbone_source(profile, str(tmp_path)), (str, Path))


def test_relevance_pairs_pair_each_prompt_with_another_prompts_answer(pairs):
    train = pairs[0].select(range(200))
    warm = reward.relevance_pairs(train, seed=3)
    answer_of = {}
    for r in train:
        answer_of.setdefault(r["chosen"], set()).add(r["prompt"])
    assert 0.8 * len(train) <= len(warm) <= len(train)
    for r in warm:
        assert r["prompt"] in answer_of[r["chosen"]]  # its own chosen answer...
        assert r["prompt"] not in answer_of[r["rejected"]]  # ...over the chosen answer of another prompt
    assert list(warm) == list(reward.relevance_pairs(train, seed=3))  # seeded
    assert list(warm) != list(reward.relevance_pairs(train, seed=4))


def test_keyword_stuffing_is_the_same_in_every_process():
    """Words of equal length are taken in alphabetical order, not in the order of a set (which depends on the
    process's hash seed): the fool table is reproducible."""
    from rlhf_helpers.reward import fool_variants

    stuffed = fool_variants("p", "omega delta gamma alpha bravo", "x")["keyword stuffing"]
    assert stuffed == " ".join(["alpha", "bravo", "delta", "gamma"] * 4) + "."


# ------------------------------------------------------------------------ notebook 04's exercises
def test_extra_fool_variants_are_scored_after_the_built_in_ones():
    prompts = ["How do I cook fluffy rice?", "How do I fix a leaky faucet?"]
    refs = ["Rinse the rice, use a tight lid, and let it rest.", "Turn off the water and replace the washer."]
    extra = {"ALL CAPS": lambda p, ref, other: ref.upper()}
    variants = reward.fool_variants(prompts[0], refs[0], refs[1], extra)
    assert list(variants)[-1] == "ALL CAPS" and variants["ALL CAPS"] == refs[0].upper()
    assert "ALL CAPS" not in reward.fool_variants(prompts[0], refs[0], refs[1])
    with pytest.raises(ValueError, match="built-in"):
        reward.fool_variants(prompts[0], refs[0], refs[1], {"reference": lambda p, r, o: r})
    table = reward.fool_table(reward.LengthReward(), prompts, refs, refs[::-1], extra=extra)
    caps = table.loc["ALL CAPS"]
    assert caps["RM prefers it %"] == 0 and caps["gold score"] == table.loc["reference", "gold score"]  # same words


def _scored(correct: list[bool], failures: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"correct": correct, "failure": failures, "label_noise": [False] * len(correct)})


def test_accuracy_comparison_puts_models_side_by_side_and_plots_them():
    failures = ["rude", "rude", "vague", "vague"]
    table = reward.accuracy_comparison({"a": _scored([True, True, False, True], failures),
                                        "b": _scored([True, False, False, False], failures)})
    assert list(table.columns) == ["pairs", "a", "b"]
    assert table.loc["all pairs", "a"] == 75 and table.loc["clean: rude", "b"] == 50 and table.loc["clean: vague", "b"] == 0
    fig = reward.plot_accuracy_comparison(table)
    assert len(fig.axes[0].patches) == 2 * len(table)  # one bar per (group, model)
    with pytest.raises(ValueError, match="other pairs"):
        reward.accuracy_comparison({"a": _scored([True] * 4, failures), "c": _scored([True] * 3, failures[:3])})
    with pytest.raises(ValueError):
        reward.accuracy_comparison({})


def test_first_sentences_and_short_versus_full_answers():
    text = "Rinse the rice. Use a tight lid! Let it rest? Serve it warm."
    assert reward.first_sentences(text, 2) == "Rinse the rice. Use a tight lid!"
    assert reward.first_sentences("One sentence only.", 2) == "One sentence only."
    with pytest.raises(ValueError):
        reward.first_sentences(text, 0)
    prompts = ["How do I cook rice?", "How do I fix a faucet?"]
    df = reward.short_vs_full(reward.LengthReward(), prompts, [text, "Turn off the water. Replace the washer."])
    assert len(df) == 1 and df.loc[0, "short"] == "Rinse the rice. Use a tight lid!"  # two sentences: nothing to cut
    assert bool(df.loc[0, "prefers_short"])  # brevity prefers the cut answer
    assert {"gold_full", "gold_short", "rm_full", "rm_short"} <= set(df.columns)
    assert "gold_full" not in reward.short_vs_full(reward.LengthReward(), prompts, [text, text], judge_scores=None)


def test_train_and_score_trains_a_fresh_backbone_and_scores_the_test_pairs(pairs, rm_tokenizer, tmp_path):
    lm = base_model.build_tiny_model(RM_MODEL, rm_tokenizer, seed=0)
    lm.save_pretrained(tmp_path / "backbone")
    rm_tokenizer.save_pretrained(tmp_path / "backbone")
    cfg = dataclasses.replace(RM_CFG, max_steps=3, base=str(tmp_path / "backbone"))
    profile = dataclasses.replace(get_profile("tiny", paths=Paths(root=tmp_path / "out", data_dir=REPO_ROOT / "data")),
                                  reward=cfg)
    train, test = pairs[0].select(range(64)), pairs[1].select(range(16))
    run, scored = reward.train_and_score(profile, train, test, progress=False)
    assert len(scored) == 16 and {"rm_chosen", "rm_rejected", "correct", "gold_chosen"} <= set(scored.columns)
    assert run.pairs == {"train": 64} and run.seconds > 0
    warm, _ = reward.train_and_score(profile, train, test, judge_scores=None, progress=False,
                                     warmup=reward.relevance_pairs(train), warmup_steps=2)
    assert warm.seconds > 0 and not (tmp_path / "out").exists()  # nothing saved
