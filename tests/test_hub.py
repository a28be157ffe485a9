"""$RLHF_HUB_MAP: Hub ids read from local paths by every loader (models, tokenizers, datasets), with clear errors."""

from __future__ import annotations

import json

import pytest
import torch

from rlhf_helpers import data_prep, notebook_setup
from rlhf_helpers.core import hub, loading

DAHOAS = "Dahoas/synthetic-instruct-gptj-pairwise"
DAHOAS_ROW = {"prompt": "How do I boil an egg?", "response": "Boil it for eight minutes.",
              "chosen": "Boil it for eight minutes.", "rejected": "Eggs are round."}


def test_inline_pairs_and_a_json_file_map_names_to_absolute_paths(tmp_path, monkeypatch):
    (tmp_path / "models" / "gpt2").mkdir(parents=True)
    (tmp_path / "d.jsonl").write_text("{}\n")
    inline = hub.hub_map(f"gpt2={tmp_path}/models/gpt2 ; {DAHOAS}={tmp_path / 'd.jsonl'};")
    assert inline == {"gpt2": str(tmp_path / "models" / "gpt2"), DAHOAS: str(tmp_path / "d.jsonl")}
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "map.json").write_text(json.dumps({"gpt2": "../models/gpt2"}))  # relative to the file
    assert hub.hub_map(str(conf / "map.json")) == {"gpt2": str(tmp_path / "models" / "gpt2")}
    monkeypatch.setenv(hub.ENV, f"gpt2={tmp_path}/models/gpt2")
    assert hub.resolve("gpt2") == str(tmp_path / "models" / "gpt2") and hub.resolve("distilgpt2") == "distilgpt2"
    monkeypatch.setenv(hub.ENV, " ")
    assert hub.hub_map() == {} and hub.resolve("gpt2") == "gpt2"


@pytest.mark.parametrize(("text", "message"), [
    ("gpt2=/no/such/model", "entry 'gpt2' -> '/no/such/model': no such file or folder"),
    ("gpt2", r"RLHF_HUB_MAP \(gpt2\): no such file"),  # no '=': read as a JSON file's path
    ("gpt2=models/gpt2", "entry 'gpt2' -> 'models/gpt2': give an absolute path"),  # the kernels start elsewhere
    ("gpt2=/tmp;=x", "'=x' is not of the form hub_name=local_path"),
])
def test_a_bad_entry_is_named(text, message):
    with pytest.raises(hub.HubMapError, match=message):
        hub.hub_map(text)


def test_a_bad_json_file_is_named_with_its_line(tmp_path):
    bad = tmp_path / "map.json"
    bad.write_text('{"gpt2":\n  nope}')
    with pytest.raises(hub.HubMapError, match=rf"RLHF_HUB_MAP \({bad}\): not valid JSON, line 2 column 3"):
        hub.hub_map(str(bad))
    bad.write_text('["gpt2"]')
    with pytest.raises(hub.HubMapError, match="expected one JSON object"):
        hub.hub_map(str(bad))


def test_loaders_and_data_read_the_mapped_paths(tmp_path, monkeypatch, make_tiny_model, tiny_tokenizer, capsys):
    model = make_tiny_model(seed=3)
    model.save_pretrained(tmp_path / "gpt2")
    tiny_tokenizer.save_pretrained(tmp_path / "gpt2")
    data = tmp_path / "dahoas.jsonl"
    data.write_text(json.dumps(DAHOAS_ROW) + "\n")
    monkeypatch.setenv(hub.ENV, f"gpt2={tmp_path / 'gpt2'};{DAHOAS}={data}")
    loaded = loading.load_causal_lm("gpt2", "float32", device="cpu")
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in loaded.state_dict().items())
    assert loading.load_tokenizer("gpt2").get_vocab() == tiny_tokenizer.get_vocab()
    assert loading.model_type("gpt2") == model.config.model_type
    rows, lines, _ = data_prep.read_rows(DAHOAS)
    assert rows == [DAHOAS_ROW] and lines == [1]
    threads = torch.get_num_threads()
    try:
        notebook_setup.start("tiny")
        assert f"local   : gpt2 -> {tmp_path / 'gpt2'}" in capsys.readouterr().out
        monkeypatch.setenv(hub.ENV, "gpt2=/no/such/model")
        with pytest.raises(hub.HubMapError, match="gpt2"):  # the first cell of every notebook fails, naming it
            notebook_setup.start("tiny", verbose=False)
    finally:
        torch.set_num_threads(threads)


def test_a_hub_id_that_cannot_be_loaded_says_what_to_do_offline(tmp_path):
    with pytest.raises(OSError, match=r"owner/model: could not be loaded from the Hugging Face Hub \(OSError\)\. "
                                      r"Without a network, map it to a local copy: RLHF_HUB_MAP='owner/model=/path"):
        with hub.offline_hint("owner/model"):
            raise OSError("We couldn't connect to 'https://huggingface.co'")
    with pytest.raises(FileNotFoundError, match="^no such checkpoint$"):  # a local path's error passes unchanged
        with hub.offline_hint(tmp_path / "checkpoints" / "sft"):
            raise FileNotFoundError("no such checkpoint")
