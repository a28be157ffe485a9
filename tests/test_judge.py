"""Tests of the gold judge (rlhf_helpers.judge): one hand-made case per criterion, robustness, grading; the
judges behind the reward-source interface (GoldJudge, HubJudge, load_judge)."""

from __future__ import annotations

import json
import math
import random
import string
import time

import pytest

from rlhf_helpers import judge
from rlhf_helpers.core.artifacts import REPO_ROOT
from rlhf_helpers.judge import CRITERIA, gold_breakdown, gold_score, gold_scores, infer_topic

PROMPT = "How do I cook fluffy rice?"
TIP_1 = "Rinse the rice in cold water until the starch washes away."
TIP_2 = "Simmer the rice covered on low heat for about 15 minutes."
GOOD = f"Happy to help! {TIP_1} {TIP_2} Good luck!"


# --- lexicons and topics ------------------------------------------------------------------------

def test_lexicons_are_disjoint_lowercase_words():
    seen: dict[str, str] = {}
    for topic, words in judge.TOPIC_LEXICONS.items():
        for word in words:
            assert word == word.lower() and word.isascii() and " " not in word, word
            assert word not in seen, f"{word!r} is in both {seen.get(word)} and {topic}"
            seen[word] = topic
    assert len(judge.TOPICS) == 10


@pytest.mark.parametrize(("prompt", "topic"), [
    ("How do I bake bread?", "cooking"),
    ("When should I prune my roses?", "gardening"),
    ("How early should I get to the airport?", "travel"),
    ("How many squats should I do?", "fitness"),
    ("How do I pay off my credit card?", "finance"),
    ("Why does my dog bark at night?", "pets"),
    ("How do I fix this Python error?", "programming"),
    ("My faucet is dripping, what do I do?", "home_repair"),
    ("Why can't I fall asleep?", "sleep"),
    ("Which lens should I buy for my camera?", "photography"),
    ("Tell me about zebras.", None),
    ("", None),
])
def test_infer_topic(prompt, topic):
    assert infer_topic(prompt) == topic


def test_plurals_and_possessives_match_the_lexicon():
    counts = judge.topic_counts("Eggs, puppies, the dog's leash, leaves, cities.")
    assert {t: c for t, c in counts.items() if c} == {"cooking": 1, "pets": 3, "gardening": 1, "travel": 1}


# --- the breakdown --------------------------------------------------------------------------------

def test_breakdown_has_every_criterion_in_range_and_the_documented_total():
    b = gold_breakdown(PROMPT, GOOD)
    assert list(b) == [*CRITERIA, "total"]
    assert all(0.0 <= v <= 1.0 for v in b.values())
    content = (b["on_topic"] + b["helpful"]) / 2
    style = 0.35 * b["polite"] + 0.30 * b["concise"] + 0.35 * b["non_repetitive"]
    assert b["total"] == pytest.approx(content * (0.4 + 0.6 * style))
    assert b["total"] > 0.9  # a good answer is near the top
    assert gold_score(PROMPT, GOOD) == b["total"]


def test_off_topic_scores_lower_than_on_topic():
    off = "Happy to help! Roll your clothes so your suitcase holds more. Book flights one to three months ahead. Good luck!"
    assert gold_breakdown(PROMPT, off)["on_topic"] < gold_breakdown(PROMPT, GOOD)["on_topic"]
    assert gold_score(PROMPT, off) < gold_score(PROMPT, GOOD) - 0.5


def test_rude_scores_lower_than_polite():
    rude = f"Ugh, obviously. {TIP_1} {TIP_2} Now stop wasting my time."
    plain = f"{TIP_1} {TIP_2}"
    assert gold_breakdown(PROMPT, rude)["polite"] < gold_breakdown(PROMPT, plain)["polite"]
    assert gold_breakdown(PROMPT, plain)["polite"] < gold_breakdown(PROMPT, GOOD)["polite"]
    assert gold_score(PROMPT, rude) < gold_score(PROMPT, plain) < gold_score(PROMPT, GOOD)


def test_repeated_scores_lower_than_not_repeated_and_is_graded():
    scores = [gold_breakdown(PROMPT, "Happy to help! " + " ".join([TIP_1] * k + [TIP_2]))["non_repetitive"]
              for k in (1, 2, 3, 4)]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == 4  # each repeat costs more
    assert gold_score(PROMPT, f"Happy to help! {TIP_1} {TIP_1} {TIP_1} {TIP_2}") < gold_score(PROMPT, GOOD)


def test_keyword_salad_is_repetitive():
    salad = "rice rice cook rice pot rice water cook rice the rice stove rice"
    assert gold_breakdown(PROMPT, salad)["non_repetitive"] < 0.7


def test_rambling_scores_lower_than_concise():
    filler = ("To be honest, this is one of those things people wonder about. Basically, there are a lot of "
              "little details here, you know. At the end of the day, you just want it to turn out well. ")
    rambling = f"Happy to help! {filler}{TIP_1} {filler}{TIP_2} Good luck!"
    assert gold_breakdown(PROMPT, rambling)["concise"] < 0.5
    assert gold_score(PROMPT, rambling) < gold_score(PROMPT, GOOD) - 0.1


def test_refusal_and_vague_answers_score_lower_than_an_answer():
    refusal = "I'm sorry, but I can't help with cooking questions."
    vague = "Good question! It depends on a lot of things. Just try a few things and see what works."
    assert gold_breakdown(PROMPT, refusal)["helpful"] < 0.1
    assert gold_breakdown(PROMPT, vague)["helpful"] < 0.1
    assert gold_score(PROMPT, refusal) < 0.2 and gold_score(PROMPT, vague) < 0.2


def test_scores_are_graded_not_pass_fail():
    # More topic words -> higher on_topic, until it saturates.
    on_topic = [gold_breakdown(PROMPT, t)["on_topic"] for t in
                ("Do it slowly.", "Cook it slowly.", "Cook the rice slowly.", "Cook the rice slowly in a pot.")]
    assert on_topic == sorted(on_topic) and len(set(on_topic)) == 4
    # A length closer to the target range -> higher concise, from both sides.
    concise = [gold_breakdown(PROMPT, "rice " * n)["concise"] for n in (1, 4, 8, 12)]
    assert concise == sorted(concise) and len(set(concise)) == 4
    long = [gold_breakdown(PROMPT, GOOD + " Serve the rice warm with a little butter." * k)["concise"]
            for k in (3, 5, 7)]
    assert long == sorted(long, reverse=True) and len(set(long)) == 3


# --- robustness to whatever a tiny model writes --------------------------------------------------

@pytest.mark.parametrize("response", ["", "   ", "\n\n", "!!! ... ???"])
def test_empty_or_wordless_output_scores_zero(response):
    b = gold_breakdown(PROMPT, response)
    assert b["total"] == 0.0 and all(v == 0.0 for v in b.values())


def test_gibberish_scores_low_without_errors():
    rng = random.Random(0)
    for _ in range(20):
        gibberish = "".join(rng.choice(string.ascii_letters + string.digits + string.punctuation + " \n")
                            for _ in range(rng.randint(1, 300)))
        b = gold_breakdown(PROMPT, gibberish)
        assert all(0.0 <= v <= 1.0 and math.isfinite(v) for v in b.values())
        assert b["total"] < 0.2, gibberish
    assert gold_score(PROMPT, "asdkj qweoiu zxcmn poiuy lkjhg mnbvc") == 0.0


def test_long_unpunctuated_and_non_ascii_text_is_handled_quickly():
    start = time.perf_counter()
    very_long = "cook the rice in a pot " * 50_000  # 1.1 MB, no punctuation
    assert 0.0 <= gold_score(PROMPT, very_long) < 0.5
    assert 0.0 <= gold_score(PROMPT, "Ca\u00e7a \u00e9t\u00e9 \U0001f35a rice pot cook \x00\x07") <= 1.0
    assert 0.0 <= gold_score("", GOOD) <= 1.0
    assert time.perf_counter() - start < 2.0


def test_chat_format_leaking_into_the_prompt_does_not_change_much():
    formatted = f"\n\nHuman: {PROMPT}\n\nAssistant:"
    assert gold_score(formatted, GOOD) == pytest.approx(gold_score(PROMPT, GOOD))


def test_unknown_topic_prompts_fall_back_to_prompt_words():
    prompt = "Tell me about zebras and their stripes."
    assert gold_score(prompt, "Zebras have black and white stripes.") > gold_score(prompt, "I like trains.")


def test_type_and_length_errors():
    with pytest.raises(TypeError, match="two strings"):
        gold_score(PROMPT, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        gold_scores([PROMPT, PROMPT], [GOOD])
    assert gold_scores([PROMPT, PROMPT], [GOOD, ""]) == [gold_score(PROMPT, GOOD), 0.0]


# --- the judge produced the committed preferences ---------------------------------------------------

def test_judge_orders_every_clean_pair_and_reverses_every_noisy_one():
    from rlhf_helpers.course_dataset import MIN_MARGIN

    path = REPO_ROOT / "data" / "preferences.jsonl"
    pairs = [json.loads(line) for line in path.read_text(encoding="ascii").splitlines()]
    for i, r in enumerate(pairs):
        margin = gold_score(r["prompt"], r["chosen"]) - gold_score(r["prompt"], r["rejected"])
        if r["label_noise"]:
            assert margin <= -MIN_MARGIN, f"noisy pair {i} is not reversed ({margin:.3f})"
        else:
            assert margin >= MIN_MARGIN, f"clean pair {i} ({r['failure']}) has margin {margin:.3f}"


# --- as reward sources ------------------------------------------------------------------------------

def test_gold_judge_scores_are_the_gold_scores_as_a_float32_tensor():
    import torch

    prompts, answers = [PROMPT, PROMPT, "Tell me about soil."], [GOOD, "Ugh, no.", ""]
    scores = judge.GoldJudge().score(prompts, answers)
    assert judge.GoldJudge.name == "gold judge"
    assert scores.dtype == torch.float32 and scores.shape == (3,)
    assert scores.tolist() == pytest.approx(gold_scores(prompts, answers))
    assert torch.equal(scores, torch.tensor(gold_scores(prompts, answers), dtype=torch.float32))


def test_load_judge_picks_gold_on_the_course_data_and_a_hub_judge_elsewhere():
    import dataclasses

    from rlhf_helpers.core.config import get_profile

    tiny, colab = get_profile("tiny"), get_profile("colab")
    assert tiny.eval.judge == "auto" and isinstance(judge.load_judge(tiny), judge.GoldJudge)  # the course data
    hub = judge.load_judge(colab)  # a Hub dataset: the stronger judge, named, not loaded until it scores
    assert isinstance(hub, judge.HubJudge)
    assert hub.name == colab.eval.hub_judge and hub.batch_size == colab.eval.batch_size

    def choosing(profile, choice):
        return dataclasses.replace(profile, eval=dataclasses.replace(profile.eval, judge=choice))

    assert isinstance(judge.load_judge(choosing(colab, "gold")), judge.GoldJudge)
    named = judge.load_judge(choosing(tiny, "org/judge-rm"))  # a model name: that Hub judge, on any data
    assert isinstance(named, judge.HubJudge) and named.name == "org/judge-rm"


def test_hub_judge_scores_prompt_answer_pairs_with_a_sequence_classifier(tmp_path, tiny_tokenizer):
    """The Colab judge: any sequence-classification reward model reading (prompt, answer) pairs; a tiny local
    one here."""
    import torch
    from transformers import GPT2Config, GPT2ForSequenceClassification

    prompts = ["How do I cook pasta?", "Tell me about soil.", "What is a comet?"]
    answers = ["Boil the pasta in salted water.", "Ugh, no.", "Water it."]
    cfg = GPT2Config(vocab_size=len(tiny_tokenizer), n_embd=32, n_layer=1, n_head=2, num_labels=1,
                     pad_token_id=tiny_tokenizer.pad_token_id)
    torch.manual_seed(0)
    GPT2ForSequenceClassification(cfg).save_pretrained(tmp_path / "judge")
    tiny_tokenizer.save_pretrained(tmp_path / "judge")
    hub = judge.HubJudge(str(tmp_path / "judge"), batch_size=1, device="cpu")
    scores = hub.score(prompts, answers)
    assert scores.shape == (3,) and scores.dtype == torch.float32 and torch.isfinite(scores).all()
    assert torch.allclose(hub.score(prompts, answers), scores)
    assert hub.score([], []).shape == (0,)
