"""Tests of the course dataset generator (rlhf_helpers.course_dataset), its content.json and the committed data/."""

from __future__ import annotations

import json
from collections import Counter
from statistics import mean

import pytest

from rlhf_helpers import course_dataset as cd
from rlhf_helpers import judge
from rlhf_helpers.core.artifacts import REPO_ROOT

DATA_DIR = REPO_ROOT / "data"  # the committed files (not $RLHF_DATA_DIR: this checks the repository)
SMALL = {"n_sft": 60, "n_pref": 60, "n_heldout": 20, "n_pretrain": 30}
SCHEMAS = {
    "sft": {"prompt": str, "response": str, "topic": str, "quality": str},
    "preferences": {"prompt": str, "chosen": str, "rejected": str, "topic": str, "failure": str, "label_noise": bool},
    "heldout": {"prompt": str, "reference": str, "topic": str},
    "pretrain": {"text": str, "topic": str},
}


@pytest.fixture(scope="module")
def data() -> dict[str, list[dict]]:
    """The full dataset as the code generates it for seed 0 (about a second)."""
    return cd.generate(seed=0)


def _words(text: str) -> int:
    return len(text.split())


# --- determinism and the committed files ------------------------------------------------------

def test_same_seed_gives_identical_records_and_other_seed_differs():
    first, second = cd.generate(seed=3, **SMALL), cd.generate(seed=3, **SMALL)
    assert first == second
    other = cd.generate(seed=4, **SMALL)
    for name in cd.FILES:
        assert other[name] != first[name], f"{name}: seed 4 produced the same records as seed 3"


def test_committed_files_equal_the_generator_output(data):
    for name in cd.FILES:
        path = DATA_DIR / f"{name}.jsonl"
        assert path.exists(), f"{path} is missing; run `python -m rlhf_helpers.course_dataset --out data`"
        assert path.read_bytes() == cd.to_jsonl(data[name]).encode("ascii"), (
            f"{path} differs from generate(seed=0); regenerate it with "
            "`python -m rlhf_helpers.course_dataset --out data --seed 0` and commit the result")


def test_write_is_atomic_and_check_detects_changes(tmp_path):
    counts = cd.write(tmp_path, seed=1, **SMALL)
    assert counts == {"sft": 60, "preferences": 60, "heldout": 20, "pretrain": 30}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}.jsonl" for n in cd.FILES)  # no temp files
    assert cd.check(tmp_path, seed=1, **SMALL) == []
    (tmp_path / "sft.jsonl").write_text('{"prompt": "edited"}\n')
    assert cd.check(tmp_path, seed=1, **SMALL) == ["sft.jsonl"]
    (tmp_path / "heldout.jsonl").unlink()
    assert cd.check(tmp_path, seed=1, **SMALL) == ["heldout.jsonl"]


def test_cli_check_fails_on_an_empty_folder(tmp_path, capsys):
    assert cd.main(["--out", str(tmp_path), "--check"]) == 1
    assert "out of date" in capsys.readouterr().out


# --- content.json -------------------------------------------------------------------------------

def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    keys = [k for k, _ in pairs]
    assert len(set(keys)) == len(keys), f"content.json repeats a key: {sorted(k for k in keys if keys.count(k) > 1)}"
    return dict(pairs)


def test_content_json_is_what_the_generator_uses():
    raw = json.loads(cd.CONTENT_FILE.read_text(encoding="utf-8"), object_pairs_hook=_no_duplicate_keys)
    assert cd.CONTENT_FILE.name == "content.json" and cd.CONTENT_FILE.parent.name == "course_dataset"
    about = raw.pop("_about")
    assert isinstance(about, str) and "make data" in about
    topics = raw.pop("topics")
    assert tuple(topics) == judge.TOPICS  # every topic, in the judge's order, and no other
    # Every other table is exposed under its upper-case name, as tuples (hashable, concatenable).
    for key, value in raw.items():
        exposed = getattr(cd, key.upper())
        assert exposed == (tuple(value) if isinstance(value, list) else value), key
        assert isinstance(exposed, str | tuple), key
    assert {k.upper() for k in raw} == {"GENERIC_TEMPLATES", "HELDOUT_TEMPLATE", "OPENERS", "CLOSERS", "RUDE_OPENERS",
                                        "RUDE_CLOSERS", "REFUSALS", "REFUSAL_TAILS", "VAGUE_LINES", "FILLERS",
                                        "SOFT_GENERIC"}
    # CONTENT is the topics with "items" as ((task, (tip, ...)), ...) in file order.
    assert list(cd.CONTENT) == list(topics)
    for topic, content in topics.items():
        exposed = cd.CONTENT[topic]
        assert list(exposed) == ["area", "templates", "closers", "facts", "items"] == list(content), topic
        assert exposed["area"] == content["area"]
        for key in ("templates", "closers", "facts"):
            assert exposed[key] == tuple(content[key]), (topic, key)
        assert exposed["items"] == tuple((task, tuple(tips)) for task, tips in content["items"].items()), topic
        assert len(exposed["items"]) > cd.HELDOUT_ITEMS and all(len(tips) == 4 for _, tips in exposed["items"])
        hash(exposed["items"])  # tuples all the way down


# --- schema, sizes, balance ---------------------------------------------------------------------

def test_counts_schemas_and_ascii(data):
    assert {name: len(records) for name, records in data.items()} == cd.DEFAULT_SIZES
    for name, records in data.items():
        for i, record in enumerate(records):
            schema = SCHEMAS[name]
            assert list(record) == list(schema), f"{name}[{i}] has keys {list(record)}"
            for key, kind in schema.items():
                assert isinstance(record[key], kind), f"{name}[{i}].{key} is not {kind.__name__}"
            assert record["topic"] in judge.TOPICS
        assert cd.to_jsonl(records).isascii(), f"{name} contains non-ASCII text"
    total_bytes = sum(len(cd.to_jsonl(records)) for records in data.values())
    assert total_bytes < 5_000_000


def test_every_topic_in_every_file(data):
    for name, records in data.items():
        assert set(Counter(r["topic"] for r in records)) == set(judge.TOPICS), name
    assert set(Counter(r["topic"] for r in data["pretrain"]).values()) == {300}
    assert set(Counter(r["topic"] for r in data["heldout"]).values()) == {20}


def test_every_failure_type_present_and_balanced(data):
    counts = Counter(r["failure"] for r in data["preferences"])
    assert set(counts) == set(cd.FAILURES)
    share = len(data["preferences"]) / len(cd.FAILURES)
    assert all(abs(c - share) <= 1 for c in counts.values()), counts


def test_label_noise_rate_is_the_stated_rate(data):
    pairs = data["preferences"]
    noisy = [r for r in pairs if r["label_noise"]]
    assert abs(len(noisy) / len(pairs) - cd.LABEL_NOISE_RATE) < 0.005
    assert len({r["failure"] for r in noisy}) == len(cd.FAILURES)  # spread over all failure types


def test_sft_quality_mix(data):
    counts = Counter(r["quality"] for r in data["sft"])
    n = len(data["sft"])
    for quality, share in cd.SFT_QUALITY.items():
        assert abs(counts[quality] / n - share) < 0.005, (quality, counts[quality])


def test_responses_are_short_enough_for_a_tiny_model(data):
    sft_words = [_words(r["response"]) for r in data["sft"]]
    assert min(sft_words) >= 10
    assert sum(15 <= w <= 60 for w in sft_words) / len(sft_words) > 0.9
    assert max(_words(r["chosen"]) for r in data["preferences"]) <= 100
    assert max(_words(r["rejected"]) for r in data["preferences"]) <= 100


def test_pretrain_text_is_prose_not_chat(data):
    for r in data["pretrain"]:
        assert "Human:" not in r["text"] and "Assistant:" not in r["text"]
        assert 15 <= _words(r["text"]) <= 100


# --- held-out prompts ---------------------------------------------------------------------------

def test_heldout_prompts_never_occur_in_training_files(data):
    training = {r["prompt"] for r in data["sft"]} | {r["prompt"] for r in data["preferences"]}
    heldout = [r["prompt"] for r in data["heldout"]]
    assert len(set(heldout)) == len(heldout), "duplicate held-out prompts"
    assert not training & set(heldout)
    # Held-out tasks are never trained on, in any phrasing.
    for topic in judge.TOPICS:
        for task, _ in cd.CONTENT[topic]["items"][-cd.HELDOUT_ITEMS:]:
            assert not any(task in prompt for prompt in training), task
    assert not any(p.startswith("Could you explain how to") for p in training)


def test_references_are_good_answers(data):
    scores = [judge.gold_score(r["prompt"], r["reference"]) for r in data["heldout"]]
    assert min(scores) > 0.7


# --- the generator and the judge agree ----------------------------------------------------------

def test_every_prompt_is_recognised_as_its_topic():
    for prompt, topic, _ in cd.training_prompts() + cd.heldout_prompts():
        assert judge.infer_topic(prompt) == topic, prompt


def test_tips_use_their_own_topic_words_only():
    for topic in judge.TOPICS:
        for _, tips in cd.CONTENT[topic]["items"]:
            for tip in tips:
                counts = judge.topic_counts(tip)
                assert counts[topic] >= 2, f"{tip!r} uses fewer than 2 {topic} words"
                assert sum(counts.values()) == counts[topic], f"{tip!r} uses other topics' words: {counts}"


def test_phrases_trigger_the_judge_markers_they_stand_for():
    def fires(kind: str, text: str) -> bool:
        return judge.marker_counts(text)[kind] > 0

    closers = list(cd.CLOSERS) + [c for t in judge.TOPICS for c in cd.CONTENT[t]["closers"]]
    assert all(fires("polite", s) for s in list(cd.OPENERS) + closers)
    assert all(fires("rude", s) for s in cd.RUDE_OPENERS + cd.RUDE_CLOSERS)
    assert all(fires("refusal", s.format(area="cooking")) for s in cd.REFUSALS)
    assert all(fires("vague", s) for s in cd.VAGUE_LINES)
    assert all(fires("filler", s) for s in cd.FILLERS)
    # ...and the good material triggers none of the negative markers.
    good = [tip for t in judge.TOPICS for _, tips in cd.CONTENT[t]["items"] for tip in tips]
    good += [f for t in judge.TOPICS for f in cd.CONTENT[t]["facts"]] + list(cd.SOFT_GENERIC) + closers
    for text in good:
        counts = judge.marker_counts(text)
        assert counts["rude"] == counts["refusal"] == counts["vague"] == counts["filler"] == 0, (text, counts)


def test_sft_flaws_are_mild_but_visible_to_the_judge(data):
    by_quality: dict[str, list[float]] = {}
    for r in data["sft"]:
        by_quality.setdefault(r["quality"], []).append(judge.gold_score(r["prompt"], r["response"]))
    good = mean(by_quality["good"])
    assert good > 0.9
    for quality, scores in by_quality.items():
        if quality != "good":
            assert 0.5 < mean(scores) < good, (quality, mean(scores), good)


def test_no_duplicate_records(data):
    assert len({json.dumps(r) for r in data["sft"]}) == len(data["sft"])
    assert len({(r["prompt"], r["chosen"], r["rejected"]) for r in data["preferences"]}) == len(data["preferences"])


def test_unknown_kinds_are_rejected():
    import random

    with pytest.raises(ValueError, match="unknown failure"):
        cd.failed_answer(random.Random(0), "sarcastic", "cooking", ("a", "b", "c", "d"))
    with pytest.raises(ValueError, match="unknown SFT quality"):
        cd.sft_answer(random.Random(0), "excellent", "cooking", ("a", "b", "c", "d"))


def test_datasheet_states_the_real_counts(data):
    """data/README.md quotes counts; this keeps them from drifting away from the data."""
    sheet = (DATA_DIR / "README.md").read_text(encoding="utf-8")
    for name, records in data.items():
        assert f"| `{name}.jsonl` | {len(records)} | {len(cd.to_jsonl(records)):,} |" in sheet, name
    for quality, count in Counter(r["quality"] for r in data["sft"]).items():
        assert f"| `{quality}` | {count} |" in sheet, quality
    noise = Counter(r["failure"] for r in data["preferences"] if r["label_noise"])
    for failure, count in Counter(r["failure"] for r in data["preferences"]).items():
        assert f"| {failure} | {count} | {noise[failure]} |" in sheet, failure
    assert f"Label noise: {cd.LABEL_NOISE_RATE:.1%}" in sheet
