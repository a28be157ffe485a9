"""Hub-shaped stand-ins: a gpt2-shaped model folder and a Dahoas-shaped preference file, mapped by $RLHF_HUB_MAP."""

from __future__ import annotations

import json

from rlhf_helpers import data_prep
from rlhf_helpers.core import hub, loading, standins
from rlhf_helpers.core.artifacts import REPO_ROOT
from rlhf_helpers.judge import HubJudge


def test_standins_have_the_hub_shape_and_load_through_the_map(tmp_path, monkeypatch):
    value = standins.build(tmp_path, REPO_ROOT / "data", rows=30)
    assert hub.hub_map(value) == {"gpt2": str(tmp_path / "gpt2"), standins.JUDGE: str(tmp_path / "judge"),
                                  standins.DAHOAS: str(tmp_path / "dahoas.jsonl")}
    config = json.loads((tmp_path / "gpt2" / "config.json").read_text())
    assert config["model_type"] == "gpt2" and config.get("pad_token_id") is None
    saved = json.loads((tmp_path / "gpt2" / "tokenizer_config.json").read_text())
    assert saved.get("pad_token") is None and "chat_template" not in saved
    assert not (tmp_path / "gpt2" / "chat_template.jinja").exists()  # as the Hub's gpt2: no template, no pad
    monkeypatch.setenv(hub.ENV, value)
    tokenizer = loading.load_tokenizer("gpt2")  # the course's loader adds what gpt2 lacks
    assert tokenizer.pad_token is not None and tokenizer.chat_template is not None
    scores = HubJudge(standins.JUDGE, device="cpu").score(["How do I boil an egg?"] * 2, ["Simmer it.", "No."])
    assert scores.shape == (2,) and scores[0] != scores[1]  # text pairs in, one score each out
    assert json.loads((tmp_path / "judge" / "config.json").read_text())["model_type"] == "deberta-v2"
    loaded = data_prep.load_data(standins.DAHOAS)
    assert loaded.format.name == "preference" and len(loaded.records) == 30
    first = json.loads((REPO_ROOT / "data" / "preferences.jsonl").read_text().splitlines()[0])
    assert loaded.records[0] == {k: first[k] for k in ("prompt", "chosen", "rejected")}
