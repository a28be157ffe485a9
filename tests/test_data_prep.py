"""Tests of rlhf_helpers.data_prep (notebook 01): readers, format detection/conversion, validation, splits, CLI, prepared data."""

from __future__ import annotations

import dataclasses
import gzip
import json
import random
import re
from pathlib import Path

import pandas as pd
import pytest
from datasets import Dataset, DatasetDict

from rlhf_helpers import data_prep
from rlhf_helpers.core.artifacts import MissingStageError, Paths
from rlhf_helpers.core.config import DataConfig, EvalConfig, get_profile
from rlhf_helpers.data_prep import (
    DataFormatError,
    clean,
    cli,
    convert_file,
    heldout,
    load_data,
    load_prepared,
    parse_mapping,
    prepare_course_data,
    rl_prompts,
    split_by_prompt,
    strip_scaffolding,
    validate,
)

REAL = Path(__file__).resolve().parent.parent.parent / "shared" / "real-data"
HH_SAMPLE = REAL / "hh_rlhf_sample" / "harmless-base_test_first200.jsonl.gz"
JUDGER_SAMPLE = REAL / "rlhf_customdata_judger_sample" / "results_first300.csv"


def write_jsonl(path: Path, rows: list, gz: bool = False) -> Path:
    text = "".join(json.dumps(r) + "\n" for r in rows)
    path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    return path


def hh(prompt_turns: str, reply: str) -> str:
    return f"{prompt_turns}\n\nAssistant: {reply}"


# ----------------------------------------------------------------------------- formats
UF_CHOSEN = [{"role": "user", "content": "Name a fruit."}, {"role": "assistant", "content": "Apple."}]
UF_REJECTED = [{"role": "user", "content": "Name a fruit."}, {"role": "assistant", "content": "No."}]
FORMAT_CASES = [
    ("hh_rlhf",
     {"chosen": hh("\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Name a fruit.", "Apple."),
      "rejected": hh("\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Name a fruit.", "No.")},
     {"prompt": "Hi\n\nAssistant: Hello!\n\nHuman: Name a fruit.", "chosen": "Apple.", "rejected": "No."}),
    ("chat_preference",  # UltraFeedback: prompt + full conversations + scores
     {"prompt": "Name a fruit.", "chosen": UF_CHOSEN, "rejected": UF_REJECTED, "messages": UF_CHOSEN,
      "score_chosen": 8.0, "score_rejected": 2.5, "prompt_id": "x1"},
     {"prompt": "Name a fruit.", "chosen": "Apple.", "rejected": "No.", "score_chosen": 8.0,
      "score_rejected": 2.5, "prompt_id": "x1"}),
    ("chat_preference",  # TRL conversational: prompt messages, chosen/rejected = the assistant turn only
     {"prompt": [{"role": "user", "content": "Name a fruit."}],
      "chosen": [{"role": "assistant", "content": "Apple."}], "rejected": [{"role": "assistant", "content": "No."}]},
     {"prompt": "Name a fruit.", "chosen": "Apple.", "rejected": "No."}),
    ("dahoas",
     {"prompt": "\n\nHuman: Name a fruit.\n\nAssistant:", "response": " Apple.", "chosen": " Apple.",
      "rejected": " No."},
     {"prompt": "Name a fruit.", "chosen": "Apple.", "rejected": "No."}),
    ("preference",  # the course's own file: extra columns survive
     {"prompt": "Name a fruit.", "chosen": "Apple.", "rejected": "No.", "topic": "food", "failure": "refusal",
      "label_noise": False},
     {"prompt": "Name a fruit.", "chosen": "Apple.", "rejected": "No.", "topic": "food", "failure": "refusal",
      "label_noise": False}),
    ("scored", {"prompt": "Name a fruit.", "response": "Apple.", "score": 1},
     {"prompt": "Name a fruit.", "response": "Apple.", "score": 1.0}),
    ("sft", {"prompt": "Name a fruit.", "response": "Apple.", "topic": "food", "quality": "good"},
     {"prompt": "Name a fruit.", "response": "Apple.", "topic": "food", "quality": "good"}),
    ("prompt_completion", {"prompt": "Name a fruit.", "completion": "Apple."},
     {"prompt": "Name a fruit.", "response": "Apple."}),
    ("sft_messages",
     {"messages": [{"role": "system", "content": "Be brief."}, *UF_CHOSEN]},
     {"prompt": "Be brief.\n\nHuman: Name a fruit.", "response": "Apple."}),
    ("heldout", {"prompt": "Name a fruit.", "reference": "Apple.", "topic": "food"},
     {"prompt": "Name a fruit.", "reference": "Apple.", "topic": "food"}),
    ("text", {"text": "Apples grow on trees.", "topic": "food"}, {"text": "Apples grow on trees.", "topic": "food"}),
]


@pytest.mark.parametrize(("name", "row", "expected"), FORMAT_CASES, ids=[c[0] for c in FORMAT_CASES])
def test_each_format_is_detected_and_converted(tmp_path, name, row, expected):
    data = load_data(write_jsonl(tmp_path / "in.jsonl", [row, row]))
    assert data.format.name == name
    assert data.kind in ("sft", "preference", "scored", "heldout", "text") and data.format.title
    assert data.records == [expected, expected]
    assert data.lines == [1, 2]
    assert name in data.describe()


def test_chat_prompts_round_trip_to_the_original_transcript(tmp_path):
    prefix = "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Name a fruit.\n\nAssistant:"
    data = load_data(write_jsonl(tmp_path / "hh.jsonl", [{"chosen": prefix + " Apple.", "rejected": prefix + " No."}]))
    assert "\n\nHuman: " + data.records[0]["prompt"] + "\n\nAssistant:" == prefix
    assert strip_scaffolding("Human: What is 2+2? Assistant:") == "What is 2+2?"


ROWS = [{"prompt": f"q{i}", "response": f"a{i}", "score": i / 4} for i in range(3)]


def _save(tmp_path: Path, kind: str) -> Path:
    """The same three scored records, in each file type the loader reads."""
    df = pd.DataFrame(ROWS)
    if kind == "jsonl":  # a blank line is skipped but still counted
        path = tmp_path / "d.jsonl"
        path.write_text(json.dumps(ROWS[0]) + "\n\n" + "".join(json.dumps(r) + "\n" for r in ROWS[1:]))
    elif kind == "jsonl.gz":
        path = write_jsonl(tmp_path / "d.jsonl.gz", ROWS, gz=True)
    elif kind == "json":
        (path := tmp_path / "d.json").write_text(json.dumps(ROWS, indent=2))
    elif kind == "json-lines":  # JSON Lines under a .json name, as many hub files are
        path = write_jsonl(tmp_path / "d.json", ROWS)
    elif kind == "csv":
        df.to_csv(path := tmp_path / "d.csv")  # with pandas' index column, which the loader drops
    elif kind == "tsv.gz":
        (path := tmp_path / "d.tsv.gz").write_bytes(gzip.compress(df.to_csv(sep="\t", index=False).encode()))
    elif kind == "parquet":
        df.to_parquet(path := tmp_path / "d.parquet")
    elif kind == "save_to_disk":
        Dataset.from_list(ROWS).save_to_disk(str(path := tmp_path / "ds"))
    else:  # a DatasetDict directory; the "train" split is read
        DatasetDict({"train": Dataset.from_list(ROWS), "test": Dataset.from_list(ROWS[:1])}).save_to_disk(
            str(path := tmp_path / "dd"))
    return path


@pytest.mark.parametrize(("kind", "first_line"), [
    ("jsonl", [1, 3, 4]), ("jsonl.gz", [1, 2, 3]), ("json", [1, 2, 3]), ("json-lines", [1, 2, 3]),
    ("csv", [2, 3, 4]), ("tsv.gz", [2, 3, 4]), ("parquet", [1, 2, 3]), ("save_to_disk", [1, 2, 3]),
    ("datasetdict", [1, 2, 3])])
def test_every_file_type_gives_the_same_records(tmp_path, kind, first_line):
    data = load_data(_save(tmp_path, kind))
    assert data.format.name == "scored"
    assert data.records == ROWS
    assert data.lines == first_line


def test_to_dataset_keeps_columns_present_only_in_later_records(tmp_path):
    rows = [{"prompt": "a", "response": "b"}, {"prompt": "c", "response": "d", "topic": "t"}]
    ds = load_data(write_jsonl(tmp_path / "x.jsonl", rows)).to_dataset()
    assert ds.column_names == ["prompt", "response", "topic"] and ds["topic"] == [None, "t"]


# ----------------------------------------------------------------------------- mappings and kinds
def test_mapping_renames_columns_and_keeps_the_rest(tmp_path):
    path = tmp_path / "qa.csv"
    pd.DataFrame({"question": ["q1", "q2"], "good": ["g1", "g2"], "bad": ["b1", "b2"], "id": ["7", "8"]}).to_csv(
        path, index=False)
    data = load_data(path, mapping="prompt=question,chosen=good,rejected=bad")
    assert data.format.name == "preference"
    assert data.records[1] == {"prompt": "q2", "chosen": "g2", "rejected": "b2", "id": "8"}
    assert parse_mapping(" prompt = q , response=a|b ") == {"prompt": "q", "response": ["a", "b"]}


def test_preference_column_decides_which_answer_is_chosen(tmp_path):
    path = tmp_path / "judged.csv"
    pd.DataFrame({"prompt": ["p1", "p2"], "human_answer": ["h1", "h2"], "machine_answer": ["m1", "m2"],
                  "human_score": [0.9, 0.1], "machine_score": [0.2, 0.8], "preference": ["human", "machine"]}
                 ).to_csv(path, index=False)
    mapping = {"prompt": "prompt", "chosen": "human_answer", "rejected": "machine_answer",
               "score_chosen": "human_score", "score_rejected": "machine_score", "preference": "preference"}
    records = load_data(path, mapping=mapping).records
    assert records == [
        {"prompt": "p1", "chosen": "h1", "rejected": "m1", "score_chosen": 0.9, "score_rejected": 0.2},
        {"prompt": "p2", "chosen": "m2", "rejected": "h2", "score_chosen": 0.8, "score_rejected": 0.1}]
    scored = load_data(path, mapping="prompt=prompt,response=human_answer|machine_answer,"
                                     "score=human_score|machine_score")
    assert [(r["response"], r["score"]) for r in scored.records] == [("h1", .9), ("m1", .2), ("h2", .1), ("m2", .8)]
    assert scored.lines == [2, 2, 3, 3]


def test_preferences_read_as_sft_use_the_chosen_answer(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "p", "chosen": "c", "rejected": "r", "topic": "t"}])
    data = load_data(path, kind="sft")
    assert data.kind == "sft" and data.records == [{"prompt": "p", "response": "c", "topic": "t"}]
    with pytest.raises(DataFormatError, match=r"p\.jsonl:1: holds preference records, which cannot be read as scored"):
        load_data(path, kind="scored")


# ----------------------------------------------------------------------------- malformed inputs
PAIR = {"prompt": "p", "chosen": "c", "rejected": "r"}
MALFORMED = [  # (file name, content, load_data kwargs, expected message)
    ("bad.jsonl", json.dumps(PAIR) + '\n{"prompt": "p" "chosen": 1}\n', {},
     r"bad\.jsonl:2: invalid JSON \(Expecting ',' delimiter\)"),
    ("miss.jsonl", "\n".join(map(json.dumps, [PAIR, PAIR, {"prompt": "p", "rejected": "r"}])), {},
     r"miss\.jsonl:3: field 'chosen' is missing"),
    ("int.jsonl", json.dumps({**PAIR, "prompt": 5}), {}, r"int\.jsonl:1: field 'prompt' must be a string, got int"),
    ("null.jsonl", json.dumps({**PAIR, "chosen": None}), {}, r"null\.jsonl:1: field 'chosen' must be a string, got null"),
    ("cols.jsonl", json.dumps({"foo": "x", "bar": "y"}), {}, r"cols\.jsonl: unknown format; columns seen: foo, bar"),
    ("map.csv", "q,a\nx,y\n", {"mapping": {"prompt": "question", "response": "a"}},
     r"map\.csv: mapping names column 'question' that does not exist; columns: q, a"),
    ("empty.jsonl", "", {}, r"empty\.jsonl: file is empty \(no records\)"),
    ("blank.jsonl", "\n  \n", {}, r"blank\.jsonl: file is empty"),
    ("header.csv", "prompt,response\n", {}, r"header\.csv: file is empty"),
    ("list.jsonl", json.dumps(PAIR) + "\n[1, 2]\n", {}, r"list\.jsonl:2: expected a JSON object, got list"),
    ("array.json", "[\n" + json.dumps(PAIR) + ",\n" + json.dumps(PAIR) + "\n", {},  # the "]" is missing
     r"array\.json:4: invalid JSON \(Expecting ',' delimiter\)"),
    ("obj.json", json.dumps({"a": 1, "b": 2}), {}, r"obj\.json: expected a JSON list of records, got dict"),
    ("rec.json", json.dumps([PAIR, {**PAIR, "rejected": 3}]), {},
     r"rec\.json: record 2: field 'rejected' must be a string, got int"),
    ("score.csv", "prompt,response,score\na,b,0.5\nc,d,high\n", {},
     r"score\.csv:3: field 'score' must be a number, got 'high'"),
    ("ragged.csv", "prompt,response\na,b\nc,d,e\n", {}, r"ragged\.csv:3: invalid CSV \(expected 2 fields, saw 3\)"),
    ("hh.jsonl", json.dumps({"chosen": "\n\nHuman: hi", "rejected": "\n\nHuman: hi"}), {},
     r"hh\.jsonl:1: field 'chosen' has no '\\n\\nAssistant:' turn"),
    ("hh2.jsonl", json.dumps({"chosen": hh("\n\nHuman: a", "x"), "rejected": hh("\n\nHuman: b", "y")}), {},
     r"hh2\.jsonl:1: field 'rejected' does not continue the same dialogue as 'chosen'"),
    ("chat.jsonl", json.dumps({"chosen": UF_CHOSEN[:1], "rejected": UF_REJECTED}), {},
     r"chat\.jsonl:1: field 'chosen' must end with an assistant message, got 'user'"),
    ("msg.jsonl", json.dumps({"messages": [{"role": "user"}]}), {},
     r"msg\.jsonl:1: field 'messages' message 0 needs string 'role' and 'content'"),
    ("pref.csv", "q,a,b,winner\nx,y,z,a\nx,y,z,both\n",
     {"mapping": "prompt=q,chosen=a,rejected=b,preference=winner"},
     r"pref\.csv:3: field 'winner' is 'both', which names neither 'a' nor 'b'"),
    ("notes.txt", "hello", {}, r"notes\.txt: unsupported file type '\.txt'"),
    ("broken.parquet", "not parquet", {}, r"broken\.parquet: not a readable parquet file"),
    ("bin.jsonl", b"\xff\xfe\x00garbage", {}, r"bin\.jsonl: not UTF-8 text"),
    ("badmap.csv", "q,a\nx,y\n", {"mapping": "prompt"}, r"--map: 'prompt' is not of the form field=column"),
]


@pytest.mark.parametrize(("name", "content", "kwargs", "message"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_input_names_file_line_and_field(tmp_path, name, content, kwargs, message):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(DataFormatError, match=message) as info:
        load_data(path, **kwargs)
    assert isinstance(info.value, ValueError)


def test_missing_paths_and_dataset_splits(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl: no such file"):
        load_data(tmp_path / "nope.jsonl")
    DatasetDict({"test": Dataset.from_list(ROWS)}).save_to_disk(str(tmp_path / "only_test"))
    with pytest.raises(DataFormatError, match="only_test: no split 'train'; splits: test"):
        load_data(tmp_path / "only_test")
    (tmp_path / "plain_dir").mkdir()
    with pytest.raises(DataFormatError, match="plain_dir: not a directory written by Dataset.save_to_disk"):
        load_data(tmp_path / "plain_dir")


# ----------------------------------------------------------------------------- broken and hostile files (issue 14)
def _numbered_pairs(n: int) -> str:
    return "".join(json.dumps({**PAIR, "prompt": f"p{i}"}) + "\n" for i in range(n))


def test_damaged_gzip_names_the_file_and_the_line_reached(tmp_path):
    packed = gzip.compress(_numbered_pairs(3000).encode())
    (cut := tmp_path / "cut.jsonl.gz").write_bytes(packed[: len(packed) // 2])
    with pytest.raises(DataFormatError, match=r"cut\.jsonl\.gz: damaged gzip file, detected after line (\d+) "
                                              r"\(Compressed file ended before the end-of-stream marker") as info:
        load_data(cut)
    assert 0 < int(re.search(r"after line (\d+)", str(info.value))[1]) < 3000
    crc = bytearray(packed)
    crc[-8] ^= 0xFF  # the CRC-32 in the gzip trailer
    (bad := tmp_path / "crc.jsonl.gz").write_bytes(bytes(crc))
    with pytest.raises(DataFormatError, match=r"crc\.jsonl\.gz: damaged gzip file, detected after line 3000 "
                                              r"\(CRC check failed"):
        load_data(bad)
    assert cli(["check", str(bad)]) == 2


def test_too_deeply_nested_json_names_file_and_line(tmp_path):
    deep = "[" * 100_000 + "]" * 100_000
    (lines := tmp_path / "deep.jsonl").write_text(json.dumps(PAIR) + "\n" + deep + "\n")
    with pytest.raises(DataFormatError, match=r"deep\.jsonl:2: invalid JSON \(nested 100,000 levels deep"):
        load_data(lines)
    (doc := tmp_path / "deep.json").write_text("[\n" + json.dumps(PAIR) + ",\n" + deep + "\n]")
    with pytest.raises(DataFormatError, match=r"deep\.json:3: invalid JSON \(nested 100,001 levels deep"):
        load_data(doc)


def test_numbers_too_long_are_errors_with_short_messages(tmp_path):
    digits = "1" * 5000
    (lines := tmp_path / "big.jsonl").write_text(json.dumps(PAIR) + '\n{"prompt": "p", "score": ' + digits + "}\n")
    with pytest.raises(DataFormatError, match=r"big\.jsonl:2: field 'score' has a number with 5,000 digits; "
                                              r"Python reads integers of at most 4,300 digits"):
        load_data(lines)
    (bad := tmp_path / "bad.jsonl").write_text('{"prompt": "p", "score": ' + digits + ', "bad\\x": 1}\n')
    with pytest.raises(DataFormatError, match=r"bad\.jsonl:1: field 'score' has a number with 5,000 digits"):
        load_data(bad)  # what follows the number is never decoded
    (doc := tmp_path / "big.json").write_text('[{"prompt": "p",\n "response": "r",\n "score": ' + digits + "}]")
    with pytest.raises(DataFormatError, match=r"big\.json:3: field 'score' has a number with 5,000 digits"):
        load_data(doc)
    (huge := tmp_path / "huge.jsonl").write_text('{"prompt": "p", "response": "r", "score": ' + "9" * 400 + "}\n")
    with pytest.raises(DataFormatError, match=r"huge\.jsonl:1: field 'score' must be a number, got 9{57}\.\.\.$"):
        load_data(huge)  # Python reads the integer, but no float holds it
    (table := tmp_path / "big.csv").write_text("prompt,response,score\np,r," + digits + "\n")
    with pytest.raises(DataFormatError, match=r"big\.csv:2: field 'score' must be a number, got '1{56}\.\.\.$"):
        load_data(table)


def test_lone_surrogates_are_errors_before_anything_is_written(tmp_path, capsys):
    src = tmp_path / "s.jsonl"
    src.write_text(json.dumps(PAIR) + '\n{"prompt": "p", "chosen": "c\\ud800", "rejected": "r"}\n')
    with pytest.raises(DataFormatError, match=r"s\.jsonl:2: field 'chosen' holds an unpaired surrogate '\\ud800', "
                                              r"which is not valid Unicode text"):
        load_data(src)
    out = tmp_path / "out.jsonl"
    assert cli(["check", str(src)]) == 2 and cli(["convert", str(src), str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("s.jsonl:2: field 'chosen' holds an unpaired surrogate") == 2 and "Traceback" not in err
    assert not out.exists()
    chat = tmp_path / "chat.jsonl"
    chat.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "\\udfff"}]}')
    with pytest.raises(DataFormatError, match=r"chat\.jsonl:1: field 'messages\[1\]\.content' holds an unpaired"):
        load_data(chat)
    (doc := tmp_path / "s.json").write_text('[{"prompt": "p", "chosen": "c", "rejected": "r"},\n'
                                            ' {"prompt": "p", "chosen": "c", "rejected": "\\udc00"}]')
    with pytest.raises(DataFormatError, match=r"s\.json: record 2: field 'rejected' holds an unpaired surrogate"):
        load_data(doc)
    (pair := tmp_path / "emoji.jsonl").write_text('{"prompt": "p", "chosen": "\\ud83d\\ude00", "rejected": "r"}\n')
    assert load_data(pair).records[0]["chosen"] == "\U0001F600"  # a surrogate *pair* is one valid character


def test_output_folder_is_refused_before_writing(tmp_path, capsys):
    src = write_jsonl(tmp_path / "in.jsonl", [PAIR])
    (out := tmp_path / "out").mkdir()
    with pytest.raises(IsADirectoryError, match=r"out: is a folder; give the output file's name, e\.g\. .*out/"):
        convert_file(src, out)
    assert cli(["convert", str(src), str(out)]) == 2
    err = capsys.readouterr().err
    assert "is a folder" in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out"] and not any(out.iterdir())


def test_convert_refuses_to_write_over_its_input(tmp_path, capsys):
    src = _messy(tmp_path)
    before = src.read_bytes()
    (link := tmp_path / "link.jsonl").symlink_to(src)
    for out in (src, tmp_path / "." / "messy.jsonl", link):
        with pytest.raises(DataFormatError, match=r"is the input file itself; write the output to another file"):
            convert_file(src, out)
    assert cli(["convert", str(src), str(src)]) == 2
    assert "is the input file itself" in capsys.readouterr().err
    assert src.read_bytes() == before


BROKEN = [  # (file name, content, expected message): inputs the data layer once read silently or with a traceback
    ("role.jsonl", json.dumps({"messages": [{"role": "wizard", "content": "hi"}, *UF_CHOSEN]}),
     r"role\.jsonl:1: field 'messages' message 0 has unknown role 'wizard' \(expected system, user, assistant\)"),
    ("role2.jsonl", json.dumps({"prompt": "p", "chosen": [{"role": "tool", "content": "x"}, *UF_CHOSEN[1:]],
                                "rejected": UF_REJECTED}),
     r"role2\.jsonl:1: field 'chosen' message 0 has unknown role 'tool'"),
    ("dupcol.csv", "prompt,response,prompt\na,b,c\n", r"dupcol\.csv:1: column 'prompt' appears 2 times in the header"),
    ("dupkey.jsonl", json.dumps(PAIR) + '\n{"prompt": "a", "chosen": "c", "rejected": "r", "prompt": "b"}\n',
     r"dupkey\.jsonl:2: field 'prompt' appears twice \(JSON would keep only the last\)"),
    ("dupnested.jsonl", '{"messages": [{"role": "user", "role": "assistant", "content": "x"}]}',
     r"dupnested\.jsonl:1: field 'role' appears twice"),
    ("dupkey.json", '[{"prompt": "a", "chosen": "c", "rejected": "r"},\n {"prompt": "a", "prompt": "b"}]',
     r"dupkey\.json: record 2: field 'prompt' appears twice"),
    ("dupwrap.json", '{"data": [{"prompt": "a", "response": "b"}], "data": [{"prompt": "c", "response": "d"}]}',
     r"dupwrap\.json: field 'data' appears twice"),
    ("multiline.csv", 'prompt,response,score\n"line 1\nline 2\nline 3",r,1\np,r,high\n',
     r"multiline\.csv:5: field 'score' must be a number, got 'high'"),
    ("ragged2.csv", 'prompt,response\n"a\nb",c\nd,e,f\n', r"ragged2\.csv:4: invalid CSV \(expected 2 fields, saw 3\)"),
    ("unclosed.csv", 'prompt,response\np,r\n"never closed,r\nq,s\n',
     r"unclosed\.csv:3: invalid CSV \(a quoted field is never closed\)"),
    ("binary.jsonl", b'{"prompt": "p", "response": "r"}\n' * 3 + b'{"prompt": "\xff"}\n',
     r"binary\.jsonl: not UTF-8 text at line 4 \(byte 0xff at column 13\)"),
    ("binary.json", b'[\n{"prompt": "\xc3"}\n]', r"binary\.json: not UTF-8 text at line 2 \(byte 0xc3 at column 13\)"),
    ("binary.csv", b"prompt,response\na,b\nc,\xe9\n", r"binary\.csv: not UTF-8 text at line 3 \(byte 0xe9 at column 3\)"),
]


@pytest.mark.parametrize(("name", "content", "message"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_input_is_an_error_naming_file_line_and_field(tmp_path, capsys, name, content, message):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(DataFormatError, match=message):
        load_data(path)
    out = tmp_path / "out.jsonl"
    for argv in (["check", str(path)], ["convert", str(path), str(out)]):  # the CLI: one line, exit code 2
        assert cli(argv) == 2
        err = capsys.readouterr().err
        assert re.search(message, err) and err.count("\n") == 1
    assert not out.exists()


def test_cli_turns_path_errors_into_one_line(tmp_path, capsys):
    src = write_jsonl(tmp_path / "in.jsonl", [PAIR])
    assert cli(["convert", str(src), str(src / "x.jsonl")]) == 2  # the output's folder is a file
    assert capsys.readouterr().err.count("\n") == 1
    assert cli(["check", str(tmp_path / "nope.jsonl.gz")]) == 2
    assert capsys.readouterr().err == f"{tmp_path / 'nope.jsonl.gz'}: no such file or folder\n"


def test_damaged_saved_datasets_and_hub_errors_are_data_errors(tmp_path, monkeypatch, capsys):
    import datasets

    Dataset.from_list([PAIR]).save_to_disk(str(saved := tmp_path / "saved"))
    (saved / "state.json").write_text("{oops")
    with pytest.raises(DataFormatError, match=r"saved: damaged save_to_disk directory \(JSONDecodeError: "):
        load_data(saved)

    def unknown_split(name, split):
        raise ValueError(f"Unknown split {split!r}. Should be one of ['train'].")

    monkeypatch.setattr(datasets, "load_dataset", unknown_split)
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()  # the progress bar of save_to_disk
    assert cli(["check", "owner/name", "--split", "tset"]) == 2
    assert capsys.readouterr().err == "owner/name: Unknown split 'tset'. Should be one of ['train'].\n"


def test_a_mistyped_local_path_is_never_sent_to_the_hub(tmp_path, monkeypatch, capsys):
    import datasets

    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda name, split: calls.append(name) or Dataset.from_list([PAIR]))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    for name in ("data/nosuch", "./nosuch", "~/nosuch", "/nosuch/x", "owner/file.jsonl", "owner/a.csv.gz", "nosuch"):
        with pytest.raises(FileNotFoundError, match=f"^{re.escape(name)}: no such file or folder$"):
            load_data(name)
    assert cli(["check", "data/nosuch"]) == 2 and capsys.readouterr().err == "data/nosuch: no such file or folder\n"
    assert calls == []
    assert len(load_data("owner/tulu-2.5-mix")) == 1  # a hub name: a dot inside it is no file extension
    assert calls == ["owner/tulu-2.5-mix"]


def test_size_limit_is_checked_while_streaming(tmp_path, monkeypatch, capsys):
    packed = gzip.compress((_numbered_pairs(60_000)).encode())  # ~3.5 MB of text, ~0.3 MB packed
    bomb = tmp_path / "bomb.jsonl.gz"
    bomb.write_bytes(packed[:-100])  # damaged near its end: only reading it all would notice
    message = (r"bomb\.jsonl\.gz: more than 1,000,000 bytes of data \(after decompression\); raise the limit with "
               r"max_bytes=\.\.\. \(CLI: --max-bytes\) or data_prep\.MAX_BYTES")
    with pytest.raises(DataFormatError, match=message):
        load_data(bomb, max_bytes=10**6)
    assert cli(["check", str(bomb), "--max-bytes", "1M"]) == 2 and re.search(message, capsys.readouterr().err)
    monkeypatch.setattr(data_prep, "MAX_BYTES", 10**6)  # the module default, read at each call
    with pytest.raises(DataFormatError, match=message):
        load_data(bomb)
    with pytest.raises(DataFormatError, match="damaged gzip file"):
        load_data(bomb, max_bytes=10**7)  # a higher limit reads on, to the damage
    (plain := tmp_path / "plain.jsonl").write_text(_numbered_pairs(100))
    with pytest.raises(DataFormatError, match=r"plain\.jsonl: more than 1,000 bytes"):
        convert_file(plain, tmp_path / "out.jsonl", max_bytes=1000)
    assert len(load_data(plain)) == 100  # 1,000,000 bytes are enough here
    pd.DataFrame([{**PAIR, "prompt": f"p{i}"} for i in range(1000)]).to_parquet(table := tmp_path / "t.parquet")
    with pytest.raises(DataFormatError, match=r"t\.parquet: more than 1,000 bytes"):
        load_data(table, max_bytes=1000)
    assert len(load_data(table)) == 1000


def test_record_size_limit(tmp_path, capsys):
    import csv

    path = write_jsonl(tmp_path / "long.jsonl", [PAIR, {**PAIR, "chosen": "x" * 5000}])
    with pytest.raises(DataFormatError, match=r"long\.jsonl:2: line longer than 1,000 characters; raise the limit "
                                              r"with max_record_chars=\.\.\. \(CLI: --max-record-chars\)"):
        load_data(path, max_record_chars=1000)
    assert len(load_data(path, max_record_chars=5100)) == 2
    assert cli(["check", str(path), "--max-record-chars", "1K"]) == 2 and "line longer" in capsys.readouterr().err
    table = tmp_path / "tall.csv"  # one record of many short lines
    table.write_text('prompt,response\np,r\n"' + "a\n" * 600 + '",r\n')
    with pytest.raises(DataFormatError, match=r"tall\.csv:3: record longer than 1,000 characters"):
        load_data(table, max_record_chars=1000)
    limit = csv.field_size_limit()
    (wide := tmp_path / "wide.csv").write_text("prompt,response\np," + "y" * 200_000 + "\n")
    assert load_data(wide).records[0]["response"] == "y" * 200_000  # more than csv's own 131,072 default
    assert csv.field_size_limit() == limit  # restored


VALID_CSV = {  # CSV dialect corners: the records must be the ones pandas read before the switch to the csv module
    "crlf": "prompt,response\r\nq1,a1\r\nq2,a2\r\n",
    "cr": "prompt,response\rq1,a1\rq2,a2\r",
    "quoted": 'prompt,response\n"multi\nline, with comma",a1\n"say ""hi""",a2\n"crlf\r\ninside",a3\n',
    "short_row": "prompt,response,score\nq1,a1\nq2,a2,3\n",
    "blank_lines": "\nprompt,response\n\nq1,a1\n  \n\t\nq2,a2\n\n",
    "saved_index": ",prompt,response\n0,q1,a1\n1,q2,a2\n",
    "bom_empty_cells": "\ufeffprompt,response\nq1,\n,a2\n",
    "after_quote": 'prompt,response\nq1,"a1"x\n',
    "no_final_newline": 'prompt,response\nq1,"a1"',
    "tsv": "prompt\tresponse\nq1\t a1 \n\t\n",
}


@pytest.mark.parametrize("name", VALID_CSV)
def test_csv_records_are_those_pandas_reads(tmp_path, name):
    path = tmp_path / ("v.tsv" if name == "tsv" else "v.csv")
    path.write_bytes(VALID_CSV[name].encode())
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig", sep="\t" if name == "tsv" else ",")
    expected = frame.drop(columns=[c for c in frame.columns if re.fullmatch(r"Unnamed: \d+", c)]).to_dict("records")
    assert data_prep.read_rows(path)[0] == expected


# ----------------------------------------------------------------------------- validation
def _messy(tmp_path: Path) -> Path:
    rows = [
        {"prompt": "p1", "chosen": "good", "rejected": "bad"},  # 1 ok
        {"prompt": "p2", "chosen": "  ", "rejected": "bad"},  # 2 empty
        {"prompt": "p3", "chosen": "same", "rejected": "same"},  # 3 chosen == rejected
        {"prompt": "p1", "chosen": "good", "rejected": "bad"},  # 4 duplicate of 1
        {"prompt": "x" * 41, "chosen": "good", "rejected": "bad"},  # 5 long prompt
        {"prompt": "p5", "chosen": "good", "rejected": "y" * 41},  # 6 long response
        {"prompt": "p6", "chosen": "", "rejected": ""},  # 7 empty AND chosen == rejected
        {"prompt": "p7", "chosen": "fine", "rejected": "worse"},  # 8 ok
    ]
    return write_jsonl(tmp_path / "messy.jsonl", rows)


def test_report_counts_every_issue_with_line_numbers(tmp_path):
    cfg = DataConfig(max_prompt_chars=40, max_response_chars=40)
    data = load_data(_messy(tmp_path))
    report = validate(data, cfg)
    assert report.counts == {"empty_text": 2, "chosen_equals_rejected": 2, "duplicate": 1,
                             "prompt_too_long": 1, "response_too_long": 1}
    assert report.examples["empty_text"] == [2, 7] and report.examples["duplicate"] == [4]
    assert (report.total, report.removed, report.kept, report.ok) == (8, 6, 2, False)
    text = str(report)
    assert "messy.jsonl" in text and "prompt > 40 chars" in text and "e.g. lines 3, 7" in text
    assert "2 kept, 6 removed" in text
    frame = report.to_frame()
    assert list(frame.columns) == ["issue", "description", "count", "examples"]
    assert frame.set_index("issue")["count"].to_dict() == report.counts
    pretty = pytest.importorskip("IPython.lib.pretty")
    assert pretty.pretty(report) == text  # what a notebook cell displays
    assert repr(data) == data.describe() and "8 preference records" in repr(data)

    kept, report2 = clean(data, cfg)
    assert [r["prompt"] for r in kept.records] == ["p1", "p7"] and kept.lines == [1, 8]
    assert report2 == report
    assert validate(kept, cfg).ok


def test_report_of_clean_sft_data_has_no_pair_check(tmp_path):
    data = load_data(write_jsonl(tmp_path / "s.jsonl", [{"prompt": "p", "response": "r"}]))
    report = validate(data)
    assert report.ok and "chosen == rejected" not in report.summary() and "1 kept, 0 removed" in report.summary()


# ----------------------------------------------------------------------------- splits
def _pairs(n_prompts: int, per_prompt: int = 2) -> list[dict]:
    return [{"prompt": f"prompt {i}", "chosen": f"c{i}.{j}", "rejected": f"r{i}.{j}", "failure": f"f{i % 3}"}
            for i in range(n_prompts) for j in range(per_prompt)]


def test_split_by_prompt_is_deterministic_and_never_shares_a_prompt():
    rows = _pairs(50)
    a = split_by_prompt(rows, 0.2, seed=0)
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    b = split_by_prompt(shuffled, 0.2, seed=0)
    assert set(a["test"]["prompt"]) == set(b["test"]["prompt"])  # same seed -> same split, whatever the order
    assert not set(a["train"]["prompt"]) & set(a["test"]["prompt"])
    assert len(set(a["test"]["prompt"])) == 10 and len(a["test"]) == 20 and len(a["train"]) == 80
    assert a["test"].column_names == ["prompt", "chosen", "rejected", "failure"]  # extra columns kept
    c = split_by_prompt(rows, 0.2, seed=1)
    assert set(c["test"]["prompt"]) != set(a["test"]["prompt"])
    tiny = split_by_prompt(_pairs(3), 0.01, names=("train", "eval"))
    assert (len(tiny["train"]), len(tiny["eval"])) == (4, 2)  # at least one prompt on each side


# ----------------------------------------------------------------------------- convert and CLI
def test_convert_writes_canonical_records_atomically(tmp_path):
    out = tmp_path / "out" / "clean.jsonl"
    data, report = convert_file(_messy(tmp_path), out, cfg=DataConfig(max_prompt_chars=40, max_response_chars=40))
    assert [json.loads(line)["prompt"] for line in out.read_text().splitlines()] == ["p1", "p7"]
    assert report.removed == 6 and len(data) == 8
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(PAIR) + "\n{oops\n")
    with pytest.raises(DataFormatError, match="bad.jsonl:2"):
        convert_file(bad, out)
    assert len(out.read_text().splitlines()) == 2  # the previous output is untouched
    with pytest.raises(DataFormatError):
        convert_file(bad, tmp_path / "new.jsonl")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl", "messy.jsonl", "out"]  # no temp files


def test_cli_check_and_convert(tmp_path, capsys):
    src = write_jsonl(tmp_path / "qa.jsonl", [{"question": "q", "answer": "a"}, {"question": "q", "answer": "a"}])
    assert cli(["check", str(src), "--map", "prompt=question,response=answer"]) == 0
    out = capsys.readouterr().out
    assert "format: sft (SFT pairs (prompt/response))" in out and "records: 2 sft" in out
    assert re.search(r"duplicate of an earlier record\s+1\s+e\.g\. line 2", out)

    assert cli(["check", str(src)]) == 2
    assert "qa.jsonl: unknown format; columns seen: question, answer" in capsys.readouterr().err

    dest = tmp_path / "canon.jsonl"
    assert cli(["convert", str(src), str(dest), "--map", "prompt=question,response=answer"]) == 0
    assert "wrote 1 records" in capsys.readouterr().out
    assert [json.loads(x) for x in dest.read_text().splitlines()] == [{"prompt": "q", "response": "a"}]

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "response": 3}\n')
    assert cli(["convert", str(bad), str(tmp_path / "never.jsonl")]) == 2
    assert "bad.jsonl:1: field 'response' must be a string, got int" in capsys.readouterr().err
    assert not (tmp_path / "never.jsonl").exists()

    pairs = write_jsonl(tmp_path / "p.jsonl", [PAIR])
    assert cli(["check", str(pairs), "--kind", "sft"]) == 0 and "records: 1 sft" in capsys.readouterr().out
    assert cli(["check", str(tmp_path / "missing.csv")]) == 2 and "no such file" in capsys.readouterr().err
    assert cli(["check", str(pairs), "--kind", "bogus"]) == 2  # argparse usage error
    assert cli([]) == 2


# ----------------------------------------------------------------------------- prepared course data
def _course_dir(path: Path) -> Path:
    path.mkdir()
    topics = ["food", "space"]
    write_jsonl(path / "sft.jsonl", [{"prompt": f"sft q{i}", "response": f"a{i}", "topic": topics[i % 2],
                                      "quality": "good"} for i in range(40)] + [{"prompt": "", "response": "x",
                                                                                  "topic": "food", "quality": "bad"}])
    write_jsonl(path / "preferences.jsonl", [
        {"prompt": f"pref q{i}", "chosen": f"c{i}", "rejected": f"r{i}", "topic": topics[i % 2],
         "failure": ["rude", "off_topic"][i % 2], "label_noise": i % 5 == 0} for i in range(30)])
    write_jsonl(path / "heldout.jsonl", [{"prompt": f"held q{i}", "reference": f"ref{i}", "topic": topics[i % 2]}
                                         for i in range(12)] + [{"prompt": "sft q0", "reference": "leak",
                                                                 "topic": "food"}])
    return path


def test_prepare_course_data_splits_saves_and_loads_back(tmp_path):
    paths = Paths(root=tmp_path / "out", data_dir=_course_dir(tmp_path / "data"))
    profile = get_profile("tiny", paths=paths, data=DataConfig(sft_eval_fraction=0.1, preference_test_fraction=0.2,
                                                               num_heldout_prompts=8))
    with pytest.raises(MissingStageError, match="01_data_preparation"):
        load_prepared(profile)
    prepared = prepare_course_data(profile)
    assert (len(prepared.sft["train"]), len(prepared.sft["eval"])) == (36, 4)  # the empty prompt was removed
    assert (len(prepared.preferences["train"]), len(prepared.preferences["test"])) == (24, 6)
    assert prepared.preferences["test"].column_names == ["prompt", "chosen", "rejected", "topic", "failure",
                                                         "label_noise"]
    assert len(prepared.heldout) == 8 and "sft q0" not in prepared.heldout["prompt"]
    assert prepared.info["heldout_seen_in_training_removed"] == 1
    assert prepared.reports["sft"].counts["empty_text"] == 1
    assert prepared.info["formats"] == {"sft": "sft", "preferences": "preference", "heldout": "heldout"}
    assert prepared.sizes()["records"].sum() == 36 + 4 + 24 + 6 + 8
    assert "sft/train: 36" in repr(prepared)

    loaded = load_prepared(profile)
    assert loaded.preferences["test"].to_list() == prepared.preferences["test"].to_list()
    assert loaded.sft["eval"].to_list() == prepared.sft["eval"].to_list()
    assert loaded.heldout["prompt"] == prepared.heldout["prompt"]
    assert loaded.reports["sft"] == prepared.reports["sft"] and loaded.info == prepared.info
    before = sorted(p.relative_to(paths.root) for p in paths.root.rglob("*"))
    loaded.preferences["train"].filter(lambda r: not r["label_noise"]).map(lambda r: {"n": len(r["chosen"])})
    assert sorted(p.relative_to(paths.root) for p in paths.root.rglob("*")) == before  # no cache file beside the splits

    again = prepare_course_data(profile)  # a second run replaces the first, same result, no leftovers
    assert again.preferences["test"]["prompt"] == prepared.preferences["test"]["prompt"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["prepared_data"]

    held = heldout(dataclasses.replace(profile, eval=EvalConfig(num_prompts=5)))  # the first 5 of notebook 01's
    assert held.prompts == prepared.heldout["prompt"][:5] and held.references == prepared.heldout["reference"][:5]
    assert len(held.topics) == 5
    train = prepared.preferences["train"]["prompt"]
    assert rl_prompts(prepared) == sorted(set(train), key=train.index)  # each prompt once, in order of first pair


def test_data_figures_draw_every_panel(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sft = pd.DataFrame({"prompt": ["p1", "p2"], "response": ["a b c", "d e"], "topic": ["cooking", "pets"],
                        "quality": ["good", "long"]})
    prefs = pd.DataFrame({"prompt": ["p1", "p2"], "chosen": ["good one", "fine"], "rejected": ["bad", "worse one"],
                          "topic": ["cooking", "pets"], "failure": ["rude", "vague"], "label_noise": [False, True]})
    fig = data_prep.data_overview(sft, prefs)
    assert [ax.get_title() for ax in fig.axes[:4]] == ["answer length", "topics", "failure shown by the worse answer",
                                                        "SFT demonstrations by quality"]
    plt.close(fig)
    hub = prefs[["prompt", "chosen", "rejected"]]  # Hub data: none of the course's annotations
    assert data_prep.has_course_annotations(prefs) and not data_prep.has_course_annotations(hub)
    fig = data_prep.data_overview(sft[["prompt", "response"]], hub)
    (ax,) = fig.axes
    labels = ax.get_legend_handles_labels()[1]
    assert ax.get_title() == "answer length"
    assert labels == ["SFT response", "chosen", "rejected", "chosen: 50th pct", "chosen: 95th pct"]
    assert ax.lines[0].get_xdata()[0] == 1.5  # the median of the chosen answers' 2 and 1 words
    plt.close(fig)
    table = pd.DataFrame({"polite": [0.2, 0.9], "concise": [1.0, 0.5]}, index=["rude", "vague"])
    fig = data_prep.judge_heatmap(table, "criteria")
    assert [t.get_text() for t in fig.axes[0].texts] == ["0.20", "1.00", "0.90", "0.50"]
    plt.close(fig)


def test_prepare_from_a_preference_file_source(tmp_path):
    src = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": f"Human: q{i} Assistant:", "response": f"c{i}",
                                                   "chosen": f"c{i}", "rejected": f"r{i}"} for i in range(20)])
    profile = get_profile("tiny", paths=Paths(root=tmp_path / "out", data_dir=tmp_path / "none"),
                          data=DataConfig(source=str(src), num_heldout_prompts=3))
    prepared = prepare_course_data(profile, save=False)
    assert prepared.info["formats"] == {"preferences": "dahoas"}
    assert prepared.sft["train"].column_names == ["prompt", "response"]
    assert prepared.heldout.column_names == ["prompt", "reference"] and len(prepared.heldout) == 2
    train_prompts = set(prepared.sft["train"]["prompt"]) | set(prepared.preferences["train"]["prompt"])
    assert not train_prompts & set(prepared.heldout["prompt"])
    assert all(r["reference"] == "c" + r["prompt"][1:] for r in prepared.heldout)
    assert not (tmp_path / "out").exists()
    with pytest.raises(FileNotFoundError, match="make data"):
        prepare_course_data(get_profile("tiny", paths=Paths(root=tmp_path, data_dir=tmp_path / "none")))


def test_hub_dataset_names_go_through_load_dataset(tmp_path, monkeypatch):
    """The Colab profile reads a hub dataset; offline, datasets.load_dataset is replaced by a stand-in."""
    import datasets

    calls = []
    pairs = [{"prompt": f"q{i}", "chosen": f"c{i}", "rejected": f"r{i}"} for i in range(40)]

    def fake_load_dataset(name, split):
        calls.append((name, split))
        return Dataset.from_list(pairs)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    data = load_data("Dahoas/synthetic-instruct-gptj-pairwise")
    assert calls == [("Dahoas/synthetic-instruct-gptj-pairwise", "train")] and data.unit == "row"
    assert data.format.name == "preference" and len(data) == 40
    profile = get_profile("colab", paths=Paths(root=tmp_path / "out", data_dir=tmp_path / "none"))
    prepared = prepare_course_data(profile)
    assert (len(prepared.preferences["train"]), len(prepared.preferences["test"])) == (36, 4)
    assert len(prepared.heldout) == 4 and set(prepared.heldout["prompt"]) == set(prepared.preferences["test"]["prompt"])
    assert load_prepared(profile).info["source"] == "Dahoas/synthetic-instruct-gptj-pairwise"


def test_package_entry_point_dispatches_to_the_data_cli(tmp_path, capsys):
    from rlhf_helpers.__main__ import main

    src = write_jsonl(tmp_path / "s.jsonl", [{"prompt": "p", "response": "r"}])
    assert main(["data", "check", str(src)]) == 0 and "records: 1 sft" in capsys.readouterr().out


# ----------------------------------------------------------------------------- the real samples
@pytest.mark.skipif(not HH_SAMPLE.exists(), reason="real-data samples not present")
def test_real_hh_rlhf_sample():
    data = load_data(HH_SAMPLE)
    assert data.format.name == "hh_rlhf" and len(data) == 200
    raw = [json.loads(line) for line in gzip.open(HH_SAMPLE, "rt", encoding="utf-8")]
    for rec, row in zip(data.records, raw, strict=True):
        prefix = "\n\nHuman: " + rec["prompt"] + "\n\nAssistant:"
        assert row["chosen"].startswith(prefix) and row["chosen"][len(prefix):].strip() == rec["chosen"]
        assert row["rejected"][len(prefix):].strip() == rec["rejected"]
    report = validate(data, DataConfig(max_prompt_chars=10**6, max_response_chars=10**6))
    assert report.counts["empty_text"] == 1 and report.counts["chosen_equals_rejected"] == 0


@pytest.mark.skipif(not JUDGER_SAMPLE.exists(), reason="real-data samples not present")
def test_real_custom_csv_sample_to_preferences_and_scores():
    recipe = ("prompt=prompt,chosen=human_answer,rejected=machine_answer,"
              "score_chosen=human_score,score_rejected=machine_score,preference=preference")
    data = load_data(JUDGER_SAMPLE, mapping=recipe)
    raw = pd.read_csv(JUDGER_SAMPLE)
    assert len(data) == 300 and data.format.name == "preference"
    machine_won = [r["chosen"] == m for r, m in zip(data.records, raw["machine_answer"], strict=True)]
    assert sum(machine_won) == (raw["preference"] == "machine").sum() == 77
    assert all(r["score_chosen"] >= r["score_rejected"] for r in data.records)  # the label follows the scores
    assert "Unnamed: 0" not in data.records[0]
    scored = load_data(JUDGER_SAMPLE, mapping="prompt=prompt,response=human_answer|machine_answer,"
                                              "score=human_score|machine_score")
    assert scored.kind == "scored" and len(scored) == 600 and isinstance(scored.records[0]["score"], float)


def test_heldout_indices_pick_a_slice_or_every_prompt():
    held = data_prep.Heldout(["a", "b", "c"], ["x", "y", "z"], ["t"] * 3, ["seen_task", "unseen_task", "seen_task"])
    assert held.indices("seen_task") == [0, 2] and held.indices("unseen_task") == [1]
    assert held.indices("") == held.indices("other") == [0, 1, 2]
