"""Hub-shaped stand-ins: a gpt2-shaped model folder and a Dahoas-shaped preference file, mapped by $RLHF_HUB_MAP."""

from __future__ import annotations

import json

from rlhf_helpers import data_prep
from rlhf_helpers.core import hub, loading, standins
from rlhf_helpers.core.artifacts import REPO_ROOT
from rlhf_helpers.judge import GoldJudge, HubJudge, gold_scores


def test_standins_have_the_hub_shape_and_load_through_the_map(tmp_path, monkeypatch):
    value = standins.build(tmp_path, REPO_ROOT / "data", rows=30)
    assert hub.hub_map(value) == {
        "gpt2": str(tmp_path / "gpt2"), "distilgpt2": str(tmp_path / "distilgpt2"), standins.JUDGE: str(tmp_path / "judge"),
        standins.CPU_JUDGE: str(tmp_path / "judge-base"), standins.QWEN2: str(tmp_path / "qwen2"),
        standins.DAHOAS: str(tmp_path / "dahoas.jsonl"), standins.ULTRAFEEDBACK: str(tmp_path / "ultrafeedback.jsonl"),
        standins.FLAN_T5: str(tmp_path / "flan-t5-base"), standins.FLAN_T5_SMALL: str(tmp_path / "flan-t5-small"),
        standins.GPT2_IMDB: str(tmp_path / "gpt2-imdb"), standins.DISTILBERT_IMDB: str(tmp_path / "distilbert-imdb"),
        standins.IMDB: str(tmp_path / "imdb.jsonl")}
    config = json.loads((tmp_path / "gpt2" / "config.json").read_text())
    assert config["model_type"] == "gpt2" and config.get("pad_token_id") is None
    saved = json.loads((tmp_path / "gpt2" / "tokenizer_config.json").read_text())
    assert saved.get("pad_token") is None and "chat_template" not in saved
    assert not (tmp_path / "gpt2" / "chat_template.jinja").exists()  # as the Hub's gpt2: no template, no pad
    monkeypatch.setenv(hub.ENV, value)
    tokenizer = loading.load_tokenizer("gpt2")  # the course's loader adds what gpt2 lacks
    assert tokenizer.pad_token is not None and tokenizer.chat_template is not None
    hub_judge = HubJudge(standins.JUDGE, device="cpu")
    scores = hub_judge.score(["How do I boil an egg?"] * 2, ["Simmer it.", "No."])
    assert scores.shape == (2,) and scores[0] != scores[1]  # text pairs in, one score each out
    assert hub_judge.scores(("How do I boil an egg?",) * 2, ("Simmer it.", "No.")) == scores.tolist()
    assert GoldJudge().scores(["How do I boil an egg?"], ["Simmer it."]) == gold_scores(["How do I boil an egg?"],
                                                                                          ["Simmer it."])
    assert json.loads((tmp_path / "judge" / "config.json").read_text())["model_type"] == "deberta-v2"
    loaded = data_prep.load_data(standins.DAHOAS)
    assert loaded.format.name == "preference" and len(loaded.records) == 30
    first = json.loads((REPO_ROOT / "data" / "preferences.jsonl").read_text().splitlines()[0])
    assert loaded.records[0] == {k: first[k] for k in ("prompt", "chosen", "rejected")}


def test_the_qwen2_standin_has_chatml_and_the_chat_file_has_message_pairs(tmp_path, monkeypatch):
    """The shapes a user's own choices bring: a Qwen2 model whose tokenizer has a ChatML template, an eos that is not
    its pad, no bos (the course puts its own template on and keeps both), and UltraFeedback-style message lists."""
    from transformers import AutoTokenizer

    monkeypatch.setenv(hub.ENV, standins.build(tmp_path, REPO_ROOT / "data", rows=20))
    saved = AutoTokenizer.from_pretrained(tmp_path / "qwen2")
    assert "<|im_start|>" in saved.chat_template and saved.bos_token is None
    assert (saved.eos_token, saved.pad_token) == ("<|im_end|>", "<|endoftext|>")
    assert json.loads((tmp_path / "qwen2" / "config.json").read_text())["model_type"] == "qwen2"
    tokenizer = loading.load_tokenizer(standins.QWEN2)
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    assert "Human:" in tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False)
    loaded = data_prep.load_data(standins.ULTRAFEEDBACK)
    assert loaded.format.name == "chat_preference" and len(loaded.records) == 20
    first = json.loads((REPO_ROOT / "data" / "preferences.jsonl").read_text().splitlines()[0])
    assert loaded.records[0]["prompt"] == first["prompt"] and loaded.records[0]["chosen"] == first["chosen"]


def test_the_standins_name_what_the_profiles_load():
    from rlhf_helpers.core.config import get_profile

    cpu, colab = get_profile("cpu"), get_profile("colab")
    assert (standins.DISTILGPT2, standins.CPU_JUDGE, standins.DAHOAS) == (cpu.model.name, cpu.eval.hub_judge, cpu.data.source)
    assert (standins.GPT2, standins.JUDGE, standins.DAHOAS) == (colab.model.name, colab.eval.hub_judge, colab.data.source)


def test_the_imdb_standins_feed_notebook_09s_colab_path(tmp_path, monkeypatch):
    """IMDB-shaped reviews (text and label only), a GPT-2 writer and a two-label DistilBERT classifier whose tokenizer
    gives no token type ids: the colab profile's sentiment data, prompts and reward load through the map."""
    from rlhf_helpers import sentiment
    from rlhf_helpers.core.config import get_profile
    from rlhf_helpers.reward import ClassifierSource

    monkeypatch.setenv(hub.ENV, standins.build(tmp_path, REPO_ROOT / "data", rows=40))
    profile = get_profile("colab")
    reviews = sentiment.load_reviews(profile)
    assert len(reviews.train) + len(reviews.test) == 40 and set(reviews.train[0]) == {"text", "label"}
    tokenizer = loading.load_tokenizer(standins.GPT2_IMDB)
    prompts, held = sentiment.review_prompts(reviews, tokenizer, profile.sentiment)
    assert len(prompts) + len(held) == len(reviews.train) and held
    classifier = ClassifierSource.from_pretrained(standins.DISTILBERT_IMDB, "POSITIVE", device="cpu",
                                                  include_prompt=True)
    assert classifier.score(held[:2], ["was great.", "was awful."]).shape == (2,)
    assert json.loads((tmp_path / "distilbert-imdb" / "config.json").read_text())["model_type"] == "distilbert"
