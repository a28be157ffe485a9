"""The data layer: load a dataset, detect its format, convert it to canonical records, validate, split, save.

Canonical records (what every later module reads):

* SFT          ``{"prompt", "response"}``
* preference   ``{"prompt", "chosen", "rejected"}``
* scored       ``{"prompt", "response", "score"}``   (for a regression reward model)
* heldout      ``{"prompt", "reference"}``  and  text ``{"text"}``  (the course's own heldout/pretrain files)

Other columns (``topic``, ``failure``, ``label_noise``, ``score_chosen``...) are kept as they are.
Prompts are plain text: the chat scaffolding of public datasets (``"\\n\\nHuman: ... \\n\\nAssistant:"``) is
stripped, so ``"\\n\\nHuman: " + prompt + "\\n\\nAssistant:"`` (the course's chat format) gives the original
transcript back, multi-turn dialogues included.

Sources: ``.jsonl``/``.json``/``.csv``/``.tsv`` (each optionally gzipped), ``.parquet``, a directory written by
``Dataset.save_to_disk``, or a Hugging Face Hub dataset name. Formats are told apart by their columns
(:data:`FORMATS`); other column names are renamed with a mapping, e.g. ``{"prompt": "question"}``.
Malformed input raises :class:`DataFormatError` naming the file, line (or row) and field; questionable
records (empty, chosen == rejected, duplicates, too long) are *reported* by :func:`validate` and removed,
with the reason, by :func:`clean`. Command line: ``python -m rlhf_helpers data check|convert ...``; it prints
any data error (or unusable path) as one line and exits with 2, never with a traceback.

Limits: a file is read as a stream and reading stops as soon as one is passed (a 400 KB gzip can hold 400 MB).

* :data:`MAX_BYTES` (256,000,000): bytes of one file, counted after gzip decompression (for parquet: its
  uncompressed size). Override: ``load_data(..., max_bytes=N)``, ``convert_file(..., max_bytes=N)``,
  ``--max-bytes N`` (suffixes K, M, G), or ``data_prep.MAX_BYTES = N`` for every later call.
* :data:`MAX_RECORD_CHARS` (1,000,000): characters of one JSONL line or CSV record (a ``.json`` document is
  bounded by :data:`MAX_BYTES` only). Override: ``max_record_chars=N``, ``--max-record-chars N``,
  ``data_prep.MAX_RECORD_CHARS = N``. Hub datasets and ``save_to_disk`` folders are not limited.

Malformed input and its message (``f`` = the file; all are :class:`DataFormatError` unless named):

===================================  ============================================================================
input                                message
===================================  ============================================================================
invalid JSON                         ``f:7: invalid JSON (Expecting ',' delimiter)``
JSON nested 100,000 deep             ``f:7: invalid JSON (nested 100,000 levels deep, too deep to read)``
a 5,000-digit integer                ``f:7: field 'score' has a number with 5,000 digits; Python reads ...``
a repeated JSON key                  ``f:7: field 'prompt' appears twice (JSON would keep only the last)``
``"\\ud800"`` (lone surrogate)        ``f:7: field 'prompt' holds an unpaired surrogate '\\ud800', which is not ...``
a line that is not a JSON object     ``f:7: expected a JSON object, got list``
bytes that are not UTF-8             ``f: not UTF-8 text at line 7 (byte 0xff at column 12)``
truncated gzip / bad CRC             ``f: damaged gzip file, detected after line 7 (CRC check failed ...)``
more data than ``MAX_BYTES``         ``f: more than 256,000,000 bytes of data (after decompression); raise ...``
a line longer than the limit         ``f:7: line longer than 1,000,000 characters; raise the limit with ...``
a repeated CSV column                ``f:1: column 'prompt' appears 2 times in the header``
a CSV row with too many cells        ``f:7: invalid CSV (expected 2 fields, saw 3)`` (7 = its first physical line)
an unclosed CSV quote                ``f:7: invalid CSV (a quoted field is never closed)``
a missing / mistyped field           ``f:7: field 'chosen' is missing`` / ``... must be a string, got int``
a score that is not a number         ``f:7: field 'score' must be a number, got 'high'``
an unknown chat role                 ``f:7: field 'messages' message 0 has unknown role 'wizard' (expected ...)``
unknown columns                      ``f: unknown format; columns seen: foo, bar. Expected columns ...``
no records                           ``f: file is empty (no records)``
an unsupported extension             ``f: unsupported file type '.txt'; use .jsonl, .json, ...``
a missing local path                 ``data/nosuch: no such file or folder`` (FileNotFoundError; never sent to
                                     the Hub: only ``owner/name`` without a file extension or local parent is)
output path is a folder              ``out: is a folder; give the output file's name, ...`` (IsADirectoryError)
output path is the input file        ``f: is the input file itself; write the output to another file``
===================================  ============================================================================
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import json
import math
import os
import re
import sys
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from .core.artifacts import DATA_INFO, atomic_dir, read_json, write_json, write_jsonl
from .core.chat import ASSISTANT_PREFIX as ASSISTANT
from .core.config import DataConfig, Profile
from .core.hub import offline_hint, resolve
from .core.loading import quiet_datasets

if TYPE_CHECKING:  # datasets and pandas are imported lazily: `import rlhf_helpers.data_prep` stays cheap
    import pandas as pd
    from datasets import Dataset, DatasetDict
    from matplotlib.figure import Figure

KINDS = ("sft", "preference", "scored", "heldout", "text")
FIELDS = {  # the canonical fields of each kind; validation looks at these
    "sft": ("prompt", "response"),
    "preference": ("prompt", "chosen", "rejected"),
    "scored": ("prompt", "response", "score"),
    "heldout": ("prompt", "reference"),
    "text": ("text",),
}
RESPONSE_FIELDS = ("response", "chosen", "rejected", "reference")  # checked against max_response_chars
NUMBER_FIELDS = ("score", "score_chosen", "score_rejected", "margin")  # parsed as numbers wherever present


class DataFormatError(ValueError):
    """Malformed input (or an output path that is the input itself): the message starts with ``file:line:``
    (``file: row N:``, or ``file:`` where no line applies) and names the field; see the table above."""


# ----------------------------------------------------------------------------- field helpers
def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _shown(value: Any, width: int = 60) -> str:
    """``repr(value)``, cut to ``width`` characters (a message stays one readable line)."""
    try:
        text = repr(value)
    except ValueError:  # an int too long for repr (sys.get_int_max_str_digits)
        text = f"<an integer of {value.bit_length():,} bits>"
    return text if len(text) <= width else f"{text[:width - 3]}..."


def _get(row: Mapping, name: str, where: str) -> Any:
    if name not in row:
        raise DataFormatError(f"{where}: field '{name}' is missing")
    return row[name]


def _text(row: Mapping, name: str, where: str) -> str:
    value = _get(row, name, where)
    if not isinstance(value, str):
        raise DataFormatError(f"{where}: field '{name}' must be a string, got {_type_name(value)}")
    return value


def _number(row: Mapping, name: str, where: str) -> float:
    """A finite number; numeric strings (all CSV cells are strings) are converted."""
    value = _get(row, name, where)
    try:
        number = float(value) if isinstance(value, (str, int, float)) and not isinstance(value, bool) else None
    except (ValueError, OverflowError):  # OverflowError: an int too large for a float
        number = None
    if number is None or not math.isfinite(number):
        raise DataFormatError(f"{where}: field '{name}' must be a number, got {_shown(value)}")
    return number


def strip_scaffolding(prompt: str) -> str:
    """``"\\n\\nHuman: Hi\\n\\nAssistant:"`` -> ``"Hi"``; inner turns of a multi-turn dialogue are kept."""
    prompt = re.sub(r"^\s*Human:\s*", "", prompt, count=1)
    return re.sub(r"\s*Assistant:\s*$", "", prompt).strip()


def _split_transcript(row: Mapping, name: str, where: str) -> tuple[str, str]:
    """HH-RLHF transcript -> (dialogue up to and including the last "\\n\\nAssistant:", final reply)."""
    text = _text(row, name, where)
    cut = text.rfind(ASSISTANT)
    if cut < 0:
        raise DataFormatError(f"{where}: field '{name}' has no '\\n\\nAssistant:' turn")
    return text[: cut + len(ASSISTANT)], text[cut + len(ASSISTANT) :].strip()


ROLES = ("system", "user", "assistant")  # the roles a chat message may have


def _messages(value: Any, name: str, where: str) -> list[tuple[str, str]]:
    """A list of ``{role, content}`` messages -> ``[(role, content), ...]``."""
    if not isinstance(value, list) or not value:
        raise DataFormatError(f"{where}: field '{name}' must be a non-empty list of messages")
    for i, m in enumerate(value):
        if not (isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
            raise DataFormatError(f"{where}: field '{name}' message {i} needs string 'role' and 'content'")
        if m["role"] not in ROLES:
            raise DataFormatError(f"{where}: field '{name}' message {i} has unknown role {_shown(m['role'])} "
                                  f"(expected {', '.join(ROLES)})")
    return [(m["role"], m["content"]) for m in value]


def _render(turns: list[tuple[str, str]]) -> str:
    """Chat turns as prompt text: the first user turn plain, later ones tagged Human:/Assistant:."""
    tag = {"assistant": "Assistant: ", "system": ""}
    return strip_scaffolding("\n\n".join(tag.get(role, "Human: ") + content for role, content in turns))


def _split_chat(row: Mapping, name: str, where: str) -> tuple[str, str]:
    """Messages ending with an assistant reply -> (the earlier turns as prompt text, the reply)."""
    turns = _messages(_get(row, name, where), name, where)
    if turns[-1][0] != "assistant":
        raise DataFormatError(f"{where}: field '{name}' must end with an assistant message, got '{turns[-1][0]}'")
    return _render(turns[:-1]), turns[-1][1].strip()


# ----------------------------------------------------------------------------- the format table
Converter = Callable[[Mapping, str], dict]


def _hh(row: Mapping, where: str) -> dict:
    prompt, chosen = _split_transcript(row, "chosen", where)
    prompt_r, rejected = _split_transcript(row, "rejected", where)
    if prompt_r != prompt:
        raise DataFormatError(f"{where}: field 'rejected' does not continue the same dialogue as 'chosen'")
    return {"prompt": strip_scaffolding(prompt), "chosen": chosen, "rejected": rejected}


def _chat_pair(row: Mapping, where: str) -> dict:
    context, chosen = _split_chat(row, "chosen", where)
    context_r, rejected = _split_chat(row, "rejected", where)
    if context and context_r and context != context_r:
        raise DataFormatError(f"{where}: field 'rejected' does not continue the same dialogue as 'chosen'")
    prompt = context or context_r
    if not prompt:  # TRL's conversational format: the prompt is its own field (a string or messages)
        value = _get(row, "prompt", where)
        prompt = _render(_messages(value, "prompt", where)) if isinstance(value, list) else _text(row, "prompt", where)
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def _dahoas(row: Mapping, where: str) -> dict:
    return {"prompt": strip_scaffolding(_text(row, "prompt", where)),
            "chosen": _text(row, "chosen", where).strip(), "rejected": _text(row, "rejected", where).strip()}


def _plain(*names: str, rename: Mapping[str, str] | None = None, numbers: tuple[str, ...] = ()) -> Converter:
    """Converter for formats that already have the canonical fields (maybe under another name)."""
    def convert(row: Mapping, where: str) -> dict:
        return {(rename or {}).get(n, n): (_number if n in numbers else _text)(row, n, where) for n in names}
    return convert


def _sft_messages(row: Mapping, where: str) -> dict:
    prompt, response = _split_chat(row, "messages", where)
    return {"prompt": prompt, "response": response}


def _is_transcript(text: Any) -> bool:
    """Does a prompt carry Human:/Assistant: scaffolding?"""
    return isinstance(text, str) and (re.match(r"\s*Human:", text) is not None
                                      or text.rstrip().endswith("Assistant:"))


@dataclass(frozen=True)
class Format:
    """One known input format: how to recognise it from a record's columns, and how to convert a record."""

    name: str  # short id, e.g. "hh_rlhf"
    title: str  # human-readable
    kind: str  # one of KINDS
    needs: tuple[str, ...]  # columns that must all be present
    convert: Converter
    test: Callable[[Mapping], bool] = lambda row: True  # an extra check on the first record
    consumes: tuple[str, ...] = ()  # further columns the format reads (not kept as extras)


# First match wins: more specific formats come first.
FORMATS: tuple[Format, ...] = (
    Format("hh_rlhf", "Anthropic HH-RLHF transcripts (chosen/rejected dialogues)", "preference",
           ("chosen", "rejected"), _hh, lambda r: "prompt" not in r and isinstance(r["chosen"], str)),
    Format("chat_preference", "chat-message preference pairs (UltraFeedback / TULU style)", "preference",
           ("chosen", "rejected"), _chat_pair, lambda r: isinstance(r["chosen"], list), ("prompt", "messages")),
    Format("dahoas", "Dahoas-style prompt/response/chosen/rejected with Human:/Assistant: scaffolding",
           "preference", ("prompt", "chosen", "rejected"), _dahoas,
           lambda r: "response" in r or _is_transcript(r["prompt"]), ("response",)),
    Format("preference", "preference pairs (prompt/chosen/rejected)", "preference",
           ("prompt", "chosen", "rejected"), _plain("prompt", "chosen", "rejected")),
    Format("scored", "scored responses (prompt/response/score)", "scored",
           ("prompt", "response", "score"), _plain("prompt", "response", "score", numbers=("score",))),
    Format("sft", "SFT pairs (prompt/response)", "sft", ("prompt", "response"), _plain("prompt", "response")),
    Format("prompt_completion", "TRL prompt/completion pairs", "sft", ("prompt", "completion"),
           _plain("prompt", "completion", rename={"completion": "response"})),
    Format("sft_messages", "chat-message conversations (messages list)", "sft", ("messages",), _sft_messages,
           lambda r: isinstance(r["messages"], list)),
    Format("heldout", "held-out prompts with references (prompt/reference)", "heldout",
           ("prompt", "reference"), _plain("prompt", "reference")),
    Format("text", "plain text (text)", "text", ("text",), _plain("text")),
)


def detect_format(row: Mapping, source: str = "input") -> Format:
    """The first entry of :data:`FORMATS` that fits ``row`` (a record, after any column mapping)."""
    for fmt in FORMATS:
        if all(n in row for n in fmt.needs) and fmt.test(row):
            return fmt
    known = ", ".join(dict.fromkeys("/".join(f.needs) for f in FORMATS))
    raise DataFormatError(f"{source}: unknown format; columns seen: {', '.join(map(str, row)) or '(none)'}. "
                          f"Expected columns {known}; rename yours with a mapping, e.g. --map prompt=question")


# ----------------------------------------------------------------------------- reading raw rows
MAX_BYTES = 256 * 10**6  # most bytes read from one file, counted after gzip decompression (override: max_bytes=)
MAX_RECORD_CHARS = 10**6  # longest JSONL line / CSV record, in characters (override: max_record_chars=)
GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class _Limits:
    """How much :func:`read_rows` reads from a file before it stops with a :class:`DataFormatError`."""

    max_bytes: int
    max_record_chars: int

    @classmethod
    def of(cls, max_bytes: int | None = None, max_record_chars: int | None = None) -> _Limits:
        """``None`` -> the module's current :data:`MAX_BYTES` / :data:`MAX_RECORD_CHARS`."""
        return cls(MAX_BYTES if max_bytes is None else max_bytes,
                   MAX_RECORD_CHARS if max_record_chars is None else max_record_chars)


def _where(source: str, unit: str, n: int) -> str:
    """``data.jsonl:17`` for lines and CSV rows (header = line 1), ``x.parquet: row 17`` otherwise."""
    return f"{source}:{n}" if unit == "line" else f"{source}: {unit} {n}"


def _too_big(path: Path, limit: int) -> DataFormatError:
    return DataFormatError(f"{path}: more than {limit:,} bytes of data (after decompression); raise the limit "
                           "with max_bytes=... (CLI: --max-bytes) or data_prep.MAX_BYTES")


def _too_long(where: str, what: str, limit: int) -> DataFormatError:
    return DataFormatError(f"{where}: {what} longer than {limit:,} characters; raise the limit with "
                           "max_record_chars=... (CLI: --max-record-chars) or data_prep.MAX_RECORD_CHARS")


def _check_gzip(raw: BinaryIO, path: Path, limits: _Limits) -> None:
    """Decompress the gzip stream ``raw`` once, in chunks, keeping nothing: stop with a :class:`DataFormatError` at
    damaged data or as soon as more than ``limits.max_bytes`` came out (a 400 KB file can hold 400 MB of text)."""
    size = lines = 0
    with gzip.GzipFile(fileobj=raw, mode="rb") as gz:
        try:
            while chunk := gz.read1(1 << 16):  # read1: a chunk comes back before the next one fails
                size += len(chunk)
                if size > limits.max_bytes:
                    raise _too_big(path, limits.max_bytes)
                lines += chunk.count(b"\n")
        except (EOFError, zlib.error, gzip.BadGzipFile) as e:
            raise DataFormatError(f"{path}: damaged gzip file, detected after line {lines} ({e})") from None


@contextmanager
def _open_text(path: Path, limits: _Limits, newline: str) -> Iterator[io.TextIOWrapper]:
    """``path`` as UTF-8 text, gunzipped if it is gzip data, once its size is known to be at most ``max_bytes``.

    Bytes that are not UTF-8 come through as lone surrogates (``errors="surrogateescape"``): the readers find them
    with :data:`_BAD_BYTE` and name their line. ``newline``: ``"\\n"`` splits lines at LF only (JSON Lines),
    ``""`` at LF, CR and CRLF, endings kept (what :mod:`csv` expects).
    """
    with open(path, "rb") as raw:
        is_gzip = raw.read(2) == GZIP_MAGIC
        raw.seek(0)
        if is_gzip:
            _check_gzip(raw, path, limits)
            raw.seek(0)
        elif os.fstat(raw.fileno()).st_size > limits.max_bytes:
            raise _too_big(path, limits.max_bytes)
        with gzip.GzipFile(fileobj=raw, mode="rb") if is_gzip else nullcontext(raw) as binary:
            yield io.TextIOWrapper(binary, encoding="utf-8-sig", errors="surrogateescape", newline=newline)


_BAD_BYTE = re.compile("[\udc80-\udcff]")  # an undecodable byte, as surrogateescape decodes it


def _not_utf8(path: Path, line: int, text: str, m: re.Match) -> DataFormatError:
    column = m.start() - (text.rfind("\n", 0, m.start()) + 1) + 1
    return DataFormatError(f"{path}: not UTF-8 text at line {line} (byte 0x{ord(m[0]) - 0xDC00:02x} at "
                           f"column {column})")


def _lines(path: Path, limits: _Limits, newline: str = "\n") -> Iterator[tuple[int, str]]:
    """``(line number, line)`` of a text file, streamed; each line at most ``limits.max_record_chars`` long."""
    limit, n = limits.max_record_chars, 0
    with _open_text(path, limits, newline) as f:
        while line := f.readline(limit + 1):
            n += 1
            if len(line) > limit and not line.endswith(("\n", "\r")):
                raise _too_long(f"{path}:{n}", "line", limit)
            if not line.isascii() and (m := _BAD_BYTE.search(line)):
                raise _not_utf8(path, n, line, m)
            yield n, line


def _read_text(path: Path, limits: _Limits) -> str:
    """The whole file as text (at most ``limits.max_bytes``)."""
    with _open_text(path, limits, newline="\n") as f:
        text = f.read()
    if not text.isascii() and (m := _BAD_BYTE.search(text)):
        raise _not_utf8(path, text.count("\n", 0, m.start()) + 1, text, m)
    return text


# JSON: repeated keys, lone surrogates, too deep nesting and too long integers are errors too
_JSON_STRING = r'"(?:[^"\\]|\\.)*"'
_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _json_decoder() -> tuple[json.JSONDecoder, list[tuple[dict, str]]]:
    """A decoder that also notes the first object with a repeated key (plain ``json`` keeps the last silently)."""
    repeated: list[tuple[dict, str]] = []

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict:
        obj = dict(pairs)
        if len(obj) < len(pairs) and not repeated:
            seen: set[str] = set()
            repeated.append((obj, next(k for k, _ in pairs if k in seen or seen.add(k))))
        return obj

    return json.JSONDecoder(object_pairs_hook=pairs_hook), repeated


def _deepest(text: str) -> tuple[int, int]:
    """(deepest nesting of ``[``/``{``, where it is first reached) in JSON text."""
    depth = deepest = at = 0
    for m in re.finditer(_JSON_STRING + r"|[\[\]{}]", text):
        if m[0] in "[{":
            depth += 1
            if depth > deepest:
                deepest, at = depth, m.start()
        elif m[0] in "]}":
            depth -= 1
    return deepest, at


def _long_integer(text: str, limit: int) -> tuple[str | None, int, int] | None:
    """(the key before it, its digits, its position) of the first integer in JSON text with more than ``limit``
    digits, or None."""
    key = None
    for m in re.finditer(rf"({_JSON_STRING})\s*:|{_JSON_STRING}|-?(\d+)", text):
        if m[1]:
            key = m[1][1:-1]  # as written (escapes not decoded)
        elif m[2] and len(m[2]) > limit:
            return key, len(m[2]), m.start()
    return None


def _json_failure(text: str, error: Exception, where: Callable[[int], str]) -> DataFormatError:
    """A :class:`DataFormatError` for a RecursionError or ValueError of the decoder; ``where(position)``."""
    if isinstance(error, RecursionError):
        depth, at = _deepest(text)
        return DataFormatError(f"{where(at)}: invalid JSON (nested {depth:,} levels deep, too deep to read)")
    limit = sys.get_int_max_str_digits()
    if limit and (found := _long_integer(text, limit)):  # Python refuses to read integers this long
        key, digits, at = found
        field_ = f"field '{key}' has " if key is not None else ""
        return DataFormatError(f"{where(at)}: {field_}a number with {digits:,} digits; Python reads integers of "
                               f"at most {limit:,} digits")
    return DataFormatError(f"{where(0)}: invalid JSON ({error})")


def _lone_surrogate(value: Any) -> tuple[str, str] | None:
    """(field path, e.g. ``chosen[1].content``, the character) of the first string with an unpaired surrogate."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        name, v = stack.pop()
        if isinstance(v, str):
            if m := _SURROGATE.search(v):
                return name, m[0]
        elif isinstance(v, dict):
            for k, x in reversed(v.items()):
                if m := _SURROGATE.search(k):
                    return f"{name}.{k}".lstrip("."), m[0]
                stack.append((f"{name}.{k}".lstrip("."), x))
        elif isinstance(v, list):
            stack.extend((f"{name}[{i}]", x) for i, x in reversed(list(enumerate(v))))
    return None


def _check_record(record: Any, where: str, repeated: list[tuple[dict, str]]) -> None:
    """Raise for a repeated key noted by the decoder, or a string no encoder can write (an unpaired surrogate)."""
    if repeated:
        raise DataFormatError(f"{where}: field '{repeated[0][1]}' appears twice (JSON would keep only the last)")
    if isinstance(record, dict) and (found := _lone_surrogate(record)):
        raise DataFormatError(f"{where}: field '{found[0]}' holds an unpaired surrogate {ascii(found[1])}, "
                              "which is not valid Unicode text")


Numbered = list[tuple[int, Any]]  # (1-based line/row number, raw record)


def _read_jsonl(path: Path, limits: _Limits) -> tuple[Numbered, str]:
    decoder, repeated = _json_decoder()
    rows = []
    for n, line in _lines(path, limits):  # "\n" only: str.splitlines() would also split at U+2028 in strings
        if not line.isspace():  # a blank line is skipped (still counted)
            try:
                rows.append((n, decoder.decode(line)))
            except json.JSONDecodeError as e:
                raise DataFormatError(f"{path}:{n}: invalid JSON ({e.msg})") from None
            except (RecursionError, ValueError) as e:
                raise _json_failure(line, e, lambda _, n=n: f"{path}:{n}") from None
            if repeated or ("\\u" in line and _ESCAPED_SURROGATE.search(line)):  # cheap test first: it is per line
                _check_record(rows[-1][1], f"{path}:{n}", repeated)
    return rows, "line"


def _read_json(path: Path, limits: _Limits) -> tuple[Numbered, str]:
    text = _read_text(path, limits)
    decoder, repeated = _json_decoder()
    try:
        data = decoder.decode(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data":  # one object per line: JSON Lines under a .json name
            return _read_jsonl(path, limits)
        raise DataFormatError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    except (RecursionError, ValueError) as e:
        raise _json_failure(text, e, lambda at: f"{path}:{text.count(chr(10), 0, at) + 1}") from None
    if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), list):
        data = next(iter(data.values()))  # {"data": [...]}
    if not isinstance(data, list):
        raise DataFormatError(f"{path}: expected a JSON list of records, got {_type_name(data)}")
    numbered = list(enumerate(data, 1))
    if repeated or _ESCAPED_SURROGATE.search(text):  # name the record that holds the problem
        for n, record in numbered:
            _check_record(record, f"{path}: record {n}", [r for r in repeated if _contains(record, r[0])])
        _check_record(None, str(path), repeated)  # a repeated key outside every record
    return numbered, "record"


def _contains(value: Any, target: dict) -> bool:
    """Is the object ``target`` (by identity) inside ``value``?"""
    stack = [value]
    while stack:
        v = stack.pop()
        if v is target:
            return True
        stack.extend(v.values() if isinstance(v, dict) else v if isinstance(v, list) else ())
    return False


@contextmanager
def _csv_field_limit(limit: int) -> Iterator[None]:
    """Let :mod:`csv` read fields up to ``limit`` characters (its own default is 131,072), then restore it."""
    old = csv.field_size_limit()
    csv.field_size_limit(min(max(limit, old), sys.maxsize))
    try:
        yield
    finally:
        csv.field_size_limit(old)


def _csv_header(path: Path, cells: list[str], line: int) -> list[tuple[int, str]]:
    """``(index, name)`` of the columns kept: empty names and pandas' ``Unnamed: N`` (a saved index) are dropped."""
    kept = [(i, c) for i, c in enumerate(cells) if c and not re.fullmatch(r"Unnamed: \d+", c)]
    names = [c for _, c in kept]
    for name in names:
        if names.count(name) > 1:
            raise DataFormatError(f"{path}:{line}: column '{name}' appears {names.count(name)} times in the header")
    return kept


def _read_csv(path: Path, limits: _Limits) -> tuple[Numbered, str]:
    """Every cell as a string (CSV has no types: "42" stays a text; scores are parsed later).

    Records are numbered by the physical line they start on (the header is line 1); short rows are padded with
    empty cells; blank lines are skipped.
    """
    sep = "\t" if ".tsv" in path.suffixes else ","
    blank = " \t\r\n".replace(sep, "")
    start, size, last, at_end = 1, 0, "", False  # the current record: first line, characters, last line

    def feed() -> Iterator[str]:
        nonlocal size, last, at_end
        for _, line in _lines(path, limits, newline=""):
            size += len(line)
            if size > limits.max_record_chars:
                raise _too_long(f"{path}:{start}", "record", limits.max_record_chars)
            last = line
            yield line
        at_end = True

    reader = csv.reader(feed(), delimiter=sep)
    header: list[tuple[int, str]] | None = None
    width, rows = 0, []
    with _csv_field_limit(limits.max_record_chars):
        try:
            for cells in reader:
                if at_end:  # csv (not strict) hands back the rest of the file as one field
                    raise DataFormatError(f"{path}:{start}: invalid CSV (a quoted field is never closed)")
                if reader.line_num > start or last.strip(blank):  # not a blank line
                    if header is None:
                        header, width = _csv_header(path, cells, start), len(cells)
                    elif len(cells) > width:
                        raise DataFormatError(f"{path}:{start}: invalid CSV (expected {width} fields, "
                                              f"saw {len(cells)})")
                    else:
                        rows.append((start, {c: cells[i] if i < len(cells) else "" for i, c in header}))
                start, size = reader.line_num + 1, 0
        except csv.Error as e:
            raise DataFormatError(f"{path}:{reader.line_num}: invalid CSV ({e})") from None
    return rows, "line"


def _read_parquet(path: Path, limits: _Limits) -> tuple[Numbered, str]:
    import pyarrow.parquet as pq

    try:
        meta = pq.read_metadata(path)
    except Exception as e:  # pyarrow raises several error types for a broken file
        raise DataFormatError(f"{path}: not a readable parquet file ({e})") from None
    if sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups)) > limits.max_bytes:
        raise _too_big(path, limits.max_bytes)
    try:
        return list(enumerate(pq.read_table(path).to_pylist(), 1)), "row"
    except Exception as e:
        raise DataFormatError(f"{path}: not a readable parquet file ({e})") from None


def _read_saved(path: Path, split: str) -> tuple[Numbered, str]:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except FileNotFoundError:
        raise DataFormatError(f"{path}: not a directory written by Dataset.save_to_disk") from None
    except ValueError as e:  # a damaged state.json (JSONDecodeError) or .arrow file (ArrowInvalid)
        raise DataFormatError(f"{path}: damaged save_to_disk directory ({type(e).__name__}: {e})") from None
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise DataFormatError(f"{path}: no split '{split}'; splits: {', '.join(ds)}")
        ds = ds[split]
    return list(enumerate(ds.to_list(), 1)), "row"


READERS = {".jsonl": _read_jsonl, ".ndjson": _read_jsonl, ".json": _read_json, ".csv": _read_csv,
           ".tsv": _read_csv, ".parquet": _read_parquet}  # each also reads a gzipped file (name.jsonl.gz)


def _is_local(name: str) -> bool:
    """Is ``name`` plainly a local path (never sent to the Hub)? Hub names look like ``owner/name``."""
    path = Path(name)
    return (name.startswith((".", "/", "~")) or name.count("/") != 1
            or re.fullmatch(r"\.[A-Za-z]\w{0,7}", path.suffix) is not None  # a file extension
            or path.parent.is_dir())


def read_rows(source: str | Path, split: str = "train", *, max_bytes: int | None = None,
              max_record_chars: int | None = None) -> tuple[list[dict], list[int], str]:
    """Raw records of a file, saved dataset directory or hub dataset: ``(rows, line_numbers, unit)``.

    ``max_bytes`` / ``max_record_chars`` bound what is read from a file (default :data:`MAX_BYTES` /
    :data:`MAX_RECORD_CHARS`); reading stops with a :class:`DataFormatError` as soon as one is passed.
    """
    source = resolve(source)  # a Hub id mapped to a local file by $RLHF_HUB_MAP
    path, name = Path(source), str(source)
    limits = _Limits.of(max_bytes, max_record_chars)
    if path.is_dir():
        numbered, unit = _read_saved(path, split)
    elif path.exists():
        suffix = Path(path.stem).suffix if path.suffix.lower() == ".gz" else path.suffix
        if suffix.lower() not in READERS:
            raise DataFormatError(f"{name}: unsupported file type '{suffix}'; use .jsonl, .json, .csv, .tsv "
                                  "(optionally .gz), .parquet, a save_to_disk directory or a hub dataset name")
        numbered, unit = READERS[suffix.lower()](path, limits)
    elif _is_local(name):
        raise FileNotFoundError(f"{name}: no such file or folder")
    else:  # a hub dataset "owner/name", e.g. "Dahoas/synthetic-instruct-gptj-pairwise" (needs the internet)
        import datasets

        try:
            with offline_hint(name):
                numbered, unit = list(enumerate(datasets.load_dataset(name, split=split).to_list(), 1)), "row"
        except ValueError as e:  # e.g. an unknown split; a missing dataset or no network is an OSError
            raise DataFormatError(f"{name}: {e}") from None
    for n, row in numbered:
        if not isinstance(row, dict):
            raise DataFormatError(f"{_where(name, unit, n)}: expected a JSON object, got {_type_name(row)}")
    if not numbered:
        raise DataFormatError(f"{name}: file is empty (no records)")
    return [r for _, r in numbered], [n for n, _ in numbered], unit


# ----------------------------------------------------------------------------- column mappings
def parse_mapping(text: str) -> dict[str, str | list[str]]:
    """``"prompt=question,response=a|b"`` -> ``{"prompt": "question", "response": ["a", "b"]}``."""
    mapping: dict[str, str | list[str]] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        target, sep, column = item.partition("=")
        if not (sep and target.strip() and column.strip()):
            raise DataFormatError(f"--map: '{item}' is not of the form field=column")
        columns = [c.strip() for c in column.split("|")]
        mapping[target.strip()] = columns if len(columns) > 1 else columns[0]
    return mapping


def _winner(label: Any, column: str) -> bool:
    """Does a ``preference`` label (e.g. "human") name this answer column (e.g. "human_answer")?"""
    v, c = str(label).strip().lower(), column.lower()
    return bool(v) and (c == v or c.startswith(v + "_") or c.endswith("_" + v))


def apply_mapping(rows: list[dict], lines: list[int], mapping: Mapping[str, str | list[str]],
                  source: str, unit: str) -> tuple[list[dict], list[int]]:
    """Rename columns to canonical fields (``{field: column}``); unmapped columns are kept as they are.

    * a list of columns makes one record per column (long format), e.g. ``response=[a, b], score=[sa, sb]``;
    * ``preference=<column>`` names a column whose value says which answer won: the value is the winning
      column's name or its prefix/suffix ("human" -> "human_answer"); when the ``rejected`` column won,
      chosen/rejected (and score_chosen/score_rejected) are swapped.
    """
    mapping = dict(mapping)
    label = mapping.pop("preference", None)
    if label is not None and not (isinstance(mapping.get("chosen"), str) and isinstance(mapping.get("rejected"), str)):
        raise DataFormatError(f"{source}: a 'preference' column needs 'chosen' and 'rejected' mapped to one column each")
    columns = {c: None for v in mapping.values() for c in (v if isinstance(v, list) else [v])}
    columns.update({label: None} if isinstance(label, str) else {})
    for column in columns:
        if column not in rows[0]:
            raise DataFormatError(f"{source}: mapping names column '{column}' that does not exist; "
                                  f"columns: {', '.join(map(str, rows[0]))}")
    widths = {len(v) for v in mapping.values() if isinstance(v, list)}
    if len(widths) > 1:
        raise DataFormatError(f"{source}: the mapping's column lists must all have the same length")
    width = widths.pop() if widths else 1
    out_rows, out_lines = [], []
    for row, n in zip(rows, lines, strict=True):
        where = _where(source, unit, n)
        extras = {k: v for k, v in row.items() if k not in columns}
        swap = False
        if label is not None:
            value = _get(row, label, where)
            swap = _winner(value, mapping["rejected"]) and not _winner(value, mapping["chosen"])
            if not swap and not _winner(value, mapping["chosen"]):
                raise DataFormatError(f"{where}: field '{label}' is {value!r}, which names neither "
                                      f"'{mapping['chosen']}' nor '{mapping['rejected']}'")
        for i in range(width):
            new = dict(extras)
            for target, column in mapping.items():
                new[target] = _get(row, column[i] if isinstance(column, list) else column, where)
            if swap:
                for a, b in (("chosen", "rejected"), ("score_chosen", "score_rejected")):
                    if a in new and b in new:
                        new[a], new[b] = new[b], new[a]
            out_rows.append(new)
            out_lines.append(n)
    return out_rows, out_lines


# ----------------------------------------------------------------------------- loading
@dataclass(repr=False)
class LoadedData:
    """Canonical records plus where each came from (``lines[i]`` is record i's 1-based line/row)."""

    records: list[dict]
    lines: list[int]
    format: Format
    kind: str
    source: str
    unit: str = "line"  # "line" (JSONL, CSV with the header as line 1), "record" (JSON list) or "row"

    def __len__(self) -> int:
        return len(self.records)

    def to_dataset(self) -> Dataset:
        return to_dataset(self.records)

    def describe(self) -> str:
        return f"{self.source}: {self.format.title} [{self.format.name}] -> {len(self)} {self.kind} records"

    __repr__ = describe  # a notebook shows this line, not thousands of records


def _as_kind(record: dict, have: str, want: str, where: str) -> dict:
    """Preference or scored records read as SFT: the chosen (or scored) response becomes the response."""
    if have == want:
        return record
    if want == "sft" and have in ("preference", "scored"):
        record = dict(record, response=record["chosen"]) if have == "preference" else record
        return {k: v for k, v in record.items() if k not in ("chosen", "rejected")}
    raise DataFormatError(f"{where}: holds {have} records, which cannot be read as {want} records")


def load_data(source: str | Path, mapping: Mapping[str, str | list[str]] | str | None = None,
              kind: str | None = None, split: str = "train", *, max_bytes: int | None = None,
              max_record_chars: int | None = None) -> LoadedData:
    """Load a file, ``save_to_disk`` directory or hub dataset and convert it to canonical records.

    ``mapping`` renames columns (see :func:`apply_mapping`; a string is parsed by :func:`parse_mapping`).
    ``kind`` ("sft", "preference", ...) asks for that kind; preference data read as "sft" keeps the chosen answer.
    ``max_bytes`` / ``max_record_chars``: reading limits (see :func:`read_rows`).
    """
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    name = str(source)
    rows, lines, unit = read_rows(source, split=split, max_bytes=max_bytes, max_record_chars=max_record_chars)
    if mapping:
        mapping = parse_mapping(mapping) if isinstance(mapping, str) else mapping
        rows, lines = apply_mapping(rows, lines, mapping, name, unit)
    fmt = detect_format(rows[0], name)
    records = []
    for row, n in zip(rows, lines, strict=True):
        where = _where(name, unit, n)
        record = fmt.convert(row, where)
        record.update({k: v for k, v in row.items() if k not in fmt.needs + fmt.consumes and k not in record})
        record.update({k: _number(record, k, where) for k in NUMBER_FIELDS if k in record})
        records.append(_as_kind(record, fmt.kind, kind or fmt.kind, where))
    return LoadedData(records, lines, fmt, kind or fmt.kind, name, unit)


def to_dataset(records: list[dict]) -> Dataset:
    """A ``datasets.Dataset`` with the union of all records' columns (missing values become None)."""
    from datasets import Dataset

    columns = list(dict.fromkeys(k for r in records for k in r))
    return Dataset.from_dict({c: [r.get(c) for r in records] for c in columns})


# ----------------------------------------------------------------------------- validation
ISSUES = {  # issue id -> description (``{...}`` filled from the report's thresholds)
    "empty_text": "empty text field",
    "chosen_equals_rejected": "chosen == rejected",
    "duplicate": "duplicate of an earlier record",
    "prompt_too_long": "prompt > {max_prompt_chars} chars",
    "response_too_long": "response > {max_response_chars} chars",
}


@dataclass
class ValidationReport:
    """What :func:`validate` found: per issue a count and the first few line/row numbers."""

    source: str
    format: str
    format_title: str
    kind: str
    total: int
    removed: int  # records with at least one issue (a record can have several)
    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[int]] = field(default_factory=dict)
    unit: str = "line"
    max_prompt_chars: int = 0
    max_response_chars: int = 0

    @property
    def kept(self) -> int:
        return self.total - self.removed

    @property
    def ok(self) -> bool:
        return self.removed == 0

    def describe(self, issue: str) -> str:
        return ISSUES[issue].format(**asdict(self))

    def summary(self) -> str:
        lines = [f"{self.source}: {self.format_title} [{self.format}], {self.total} {self.kind} records"]
        for issue in ISSUES:
            if issue == "chosen_equals_rejected" and self.kind != "preference":
                continue
            count, ex = self.counts.get(issue, 0), self.examples.get(issue, [])
            where = f"   e.g. {self.unit}{'s' * (len(ex) > 1)} {', '.join(map(str, ex))}" if ex else ""
            lines.append(f"  {self.describe(issue):<32}{count:>7}{where}")
        lines.append(f"  -> {self.kept} kept, {self.removed} removed")
        return "\n".join(lines)

    __str__ = summary

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # how IPython/Jupyter displays a report
        printer.text(self.summary())

    def to_frame(self) -> pd.DataFrame:
        """One row per issue: issue, description, count, examples (line/row numbers)."""
        import pandas as pd

        return pd.DataFrame([{"issue": i, "description": self.describe(i), "count": self.counts.get(i, 0),
                              "examples": self.examples.get(i, [])} for i in ISSUES])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ValidationReport:
        return cls(**d)


def _check(data: LoadedData, cfg: DataConfig, max_examples: int) -> tuple[ValidationReport, list[bool]]:
    fields = FIELDS[data.kind]
    counts = {i: 0 for i in ISSUES}
    examples: dict[str, list[int]] = {i: [] for i in ISSUES}
    seen: set[tuple] = set()
    keep = []
    for record, n in zip(data.records, data.lines, strict=True):
        texts = [record[f] for f in fields if isinstance(record[f], str)]
        key = tuple(record[f] for f in fields)
        found = [
            issue for issue, bad in (
                ("empty_text", any(not t.strip() for t in texts)),
                ("chosen_equals_rejected", data.kind == "preference" and record["chosen"] == record["rejected"]),
                ("duplicate", key in seen),
                ("prompt_too_long", len(record.get("prompt", "")) > cfg.max_prompt_chars),
                ("response_too_long", any(len(record.get(f) or "") > cfg.max_response_chars
                                          for f in RESPONSE_FIELDS if f in fields)),
            ) if bad
        ]
        seen.add(key)
        for issue in found:
            counts[issue] += 1
            if len(examples[issue]) < max_examples and n not in examples[issue]:
                examples[issue].append(n)
        keep.append(not found)
    report = ValidationReport(data.source, data.format.name, data.format.title, data.kind, len(data.records),
                              keep.count(False), counts, examples, data.unit,
                              cfg.max_prompt_chars, cfg.max_response_chars)
    return report, keep


def validate(data: LoadedData, cfg: DataConfig | None = None, max_examples: int = 5) -> ValidationReport:
    """Count empty texts, chosen == rejected, duplicates and over-length records (thresholds from ``cfg``)."""
    return _check(data, cfg or DataConfig(), max_examples)[0]


def clean(data: LoadedData, cfg: DataConfig | None = None) -> tuple[LoadedData, ValidationReport]:
    """Drop every record :func:`validate` flags; return the kept records and the report saying why."""
    report, keep = _check(data, cfg or DataConfig(), max_examples=5)
    kept = [(r, n) for r, n, k in zip(data.records, data.lines, keep, strict=True) if k]
    return LoadedData([r for r, _ in kept], [n for _, n in kept], data.format, data.kind, data.source,
                      data.unit), report


# ----------------------------------------------------------------------------- splits
def _rank(prompt: str, seed: int) -> str:
    """A seeded, platform-independent hash (Python's hash() changes between runs)."""
    return hashlib.sha256(f"{seed}\x00{prompt}".encode()).hexdigest()


def split_by_prompt(data: Dataset | list[dict], test_fraction: float, seed: int = 0,
                    names: tuple[str, str] = ("train", "test")) -> DatasetDict:
    """Split so that every record of a prompt lands on the same side (the test prompts are unseen).

    The distinct prompts are ordered by a seeded hash and the first ``round(n * test_fraction)`` (at least one,
    when there are two or more) go to the test side: same data + seed -> same split, whatever the record order.
    """
    from datasets import Dataset, DatasetDict

    ds = data if isinstance(data, Dataset) else to_dataset(data)
    prompts = sorted(set(ds["prompt"]), key=lambda p: _rank(p, seed))
    n_test = round(len(prompts) * test_fraction)
    if test_fraction > 0 and len(prompts) >= 2:
        n_test = min(max(n_test, 1), len(prompts) - 1)
    test = set(prompts[:n_test])
    is_test = [p in test for p in ds["prompt"]]
    return DatasetDict({names[0]: ds.select([i for i, t in enumerate(is_test) if not t]),
                        names[1]: ds.select([i for i, t in enumerate(is_test) if t])})


def sample_prompts(ds: Dataset, n: int, seed: int = 0) -> Dataset:
    """Up to ``n`` records with distinct prompts, chosen by the seeded hash, in their original order."""
    first: dict[str, int] = {}
    for i, p in enumerate(ds["prompt"]):
        first.setdefault(p, i)
    chosen = sorted(first, key=lambda p: _rank(p, seed))[:n]
    return ds.select(sorted(first[p] for p in chosen))


# ----------------------------------------------------------------------------- the course's prepared data
@dataclass(repr=False)
class PreparedData:
    """Notebook 01's output: SFT train/eval, preference train/test, held-out prompts, the validation reports."""

    sft: DatasetDict  # "train" / "eval": prompt, response (+ topic, quality...)
    preferences: DatasetDict  # "train" / "test": prompt, chosen, rejected (+ topic, failure, label_noise...)
    heldout: Dataset  # prompt, reference (+ topic)
    reports: dict[str, ValidationReport]
    info: dict[str, Any]

    def __repr__(self) -> str:
        return f"PreparedData({', '.join(f'{k}: {v}' for k, v in self.info['sizes'].items())})"

    def sizes(self) -> pd.DataFrame:
        """Records per dataset and split, as a table."""
        import pandas as pd

        rows = [(name, split, len(ds)) for name, dd in (("sft", self.sft), ("preferences", self.preferences))
                for split, ds in dd.items()] + [("heldout", "-", len(self.heldout))]
        return pd.DataFrame(rows, columns=["dataset", "split", "records"])

    def save(self, path: Path) -> None:
        """Write everything to a temporary directory next to ``path``, then swap it in (:func:`atomic_dir`)."""
        def write(tmp: Path) -> None:
            self.sft.save_to_disk(str(tmp / "sft"))
            self.preferences.save_to_disk(str(tmp / "preferences"))
            self.heldout.save_to_disk(str(tmp / "heldout"))
            write_json(tmp / "reports.json", {k: r.to_dict() for k, r in self.reports.items()})
            write_json(tmp / DATA_INFO, self.info)  # written last: marks completeness

        with quiet_datasets():  # three tiny saves: their bars would only clutter the notebook
            atomic_dir(path, write)


def prepare_course_data(profile: Profile, save: bool = True) -> PreparedData:
    """Load the profile's data source, validate + clean, split, and save under ``profile.paths.prepared_data``.

    ``profile.data.source == "course"``: ``sft.jsonl``, ``preferences.jsonl`` and ``heldout.jsonl`` from
    ``profile.paths.data_dir``. Otherwise a preference file or hub dataset: its pairs are split by prompt; SFT uses
    the chosen answers of the training prompts; the held-out prompts are the test prompts, chosen as reference.
    Held-out prompts also seen in a training split are removed (the number is in ``info``).
    """
    cfg, seed = profile.data, profile.seed
    reports: dict[str, ValidationReport] = {}

    def load_clean(name: str, source: str | Path, kind: str) -> Dataset:
        data, reports[name] = clean(load_data(source, kind=kind, split=cfg.hub_split), cfg)
        return data.to_dataset()

    if cfg.source == "course":
        d = Path(profile.paths.data_dir)
        missing = [f for f in ("sft.jsonl", "preferences.jsonl", "heldout.jsonl") if not (d / f).exists()]
        if missing:
            raise FileNotFoundError(f"{d}: missing {', '.join(missing)}; generate them with `make data` "
                                    "(python -m rlhf_helpers.course_dataset --out data --seed 0)")
        sft = split_by_prompt(load_clean("sft", d / "sft.jsonl", "sft"), cfg.sft_eval_fraction, seed,
                              ("train", "eval"))
        prefs = split_by_prompt(load_clean("preferences", d / "preferences.jsonl", "preference"),
                                cfg.preference_test_fraction, seed)
        heldout = load_clean("heldout", d / "heldout.jsonl", "heldout")
    else:
        prefs = split_by_prompt(load_clean("preferences", cfg.source, "preference"),
                                cfg.preference_test_fraction, seed)
        sft_all = prefs["train"].rename_column("chosen", "response").remove_columns("rejected")
        sft = split_by_prompt(sft_all, cfg.sft_eval_fraction, seed, ("train", "eval"))
        heldout = prefs["test"].rename_column("chosen", "reference").remove_columns("rejected")
    seen = set(sft["train"]["prompt"]) | set(prefs["train"]["prompt"])
    unseen = [i for i, p in enumerate(heldout["prompt"]) if p not in seen]
    n_seen = len(heldout) - len(unseen)
    heldout = sample_prompts(heldout.select(unseen), cfg.num_heldout_prompts, seed)
    sizes = {f"{n}/{s}": len(ds) for n, dd in (("sft", sft), ("preferences", prefs)) for s, ds in dd.items()}
    info = {"profile": profile.name, "source": cfg.source, "seed": seed,
            "formats": {k: r.format for k, r in reports.items()},
            "sizes": {**sizes, "heldout": len(heldout)}, "heldout_seen_in_training_removed": n_seen}
    prepared = PreparedData(sft, prefs, heldout, reports, info)
    if save:
        prepared.save(profile.paths.prepared_data)
    return prepared


def load_prepared(profile: Profile) -> PreparedData:
    """Load what :func:`prepare_course_data` saved; raises ``MissingStageError`` naming notebook 01 if absent.

    The splits are read into memory: a ``map`` or ``filter`` of a dataset backed by the saved files writes its cache
    files beside them, into the stage's folder, which later notebooks and every exercise must leave as it is."""
    from datasets import load_from_disk

    path = profile.paths.finished("data")
    reports = read_json(path / "reports.json")

    def load(name: str) -> Any:
        return load_from_disk(str(path / name), keep_in_memory=True)

    return PreparedData(load("sft"), load("preferences"), load("heldout"),
                        {k: ValidationReport.from_dict(r) for k, r in reports.items()},
                        read_json(path / DATA_INFO))


def rl_prompts(prep: PreparedData) -> list[str]:
    """The prompts the online RL stages train on (PPO in notebook 05, RLOO and GRPO in 07): the preference training
    pairs' prompts, each once, in their order."""
    return list(dict.fromkeys(prep.preferences["train"]["prompt"]))


@dataclass
class Heldout:
    """The held-out prompts the evaluation answers (notebooks 05 and 06), their references, topics and slices
    (course data: ``seen_task`` = a trained task in new words, the headline; ``unseen_task`` = generalisation)."""

    prompts: list[str]
    references: list[str]
    topics: list[str]
    splits: list[str]

    def indices(self, split: str) -> list[int]:
        """Indices of the prompts of slice ``split``; every prompt's when the data has no such slice."""
        return [i for i, s in enumerate(self.splits) if s == split] or list(range(len(self.prompts)))


def heldout(profile: Profile) -> Heldout:
    """The first ``profile.eval.num_prompts`` held-out prompts of notebook 01, with references (and topics)."""
    ds = load_prepared(profile).heldout
    n = min(profile.eval.num_prompts, len(ds))
    rows = ds.select(range(n))
    topics = rows["topic"] if "topic" in rows.column_names else [""] * n
    splits = rows["split"] if "split" in rows.column_names else [""] * n
    return Heldout(list(rows["prompt"]), list(rows["reference"]), list(topics), list(splits))


# ----------------------------------------------------------------------------- writing and the CLI
def _check_output(source: str | Path, out: str | Path) -> None:
    """Refuse, before anything is read or written, an output path that is a folder or the input file itself."""
    src, out = Path(source), Path(out)
    if out.is_dir():
        raise IsADirectoryError(f"{out}: is a folder; give the output file's name, e.g. {out / 'data.jsonl'}")
    if src.is_file() and out.exists() and os.path.samefile(src, out):
        raise DataFormatError(f"{out}: is the input file itself; write the output to another file")


def convert_file(source: str | Path, out: str | Path, mapping: Mapping | str | None = None, kind: str | None = None,
                 cfg: DataConfig | None = None, keep_flagged: bool = False, split: str = "train", *,
                 max_bytes: int | None = None, max_record_chars: int | None = None,
                 ) -> tuple[LoadedData, ValidationReport]:
    """Load ``source``, drop flagged records (unless ``keep_flagged``) and write canonical JSONL to ``out``.

    ``out`` may be neither a folder nor the input file (checked first). _Limits: see :func:`read_rows`.
    """
    _check_output(source, out)
    data = load_data(source, mapping=mapping, kind=kind, split=split, max_bytes=max_bytes,
                     max_record_chars=max_record_chars)
    kept, report = clean(data, cfg)
    write_jsonl((data if keep_flagged else kept).records, out)
    return data, report


def _count(text: str) -> int:
    """``"300M"`` -> 300_000_000 (suffixes K, M, G: powers of 1000), for the CLI's limits."""
    m = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]?)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a count: {text!r} (e.g. 1000000, 300M, 2G)")
    return int(m[1]) * 1000 ** " KMG".index(m[2].upper() or " ")


def cli(argv: list[str] | None = None) -> int:
    """``check PATH`` / ``convert PATH OUT.jsonl``; returns the exit code (2 on malformed input)."""
    parser = argparse.ArgumentParser(prog="python -m rlhf_helpers data",
                                     description="Detect, validate and convert RLHF datasets.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_ in (("check", "detect the format and print the validation report"),
                        ("convert", "write canonical JSONL records (flagged records dropped)")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("path", help="file, save_to_disk directory or hub dataset name")
        if name == "convert":
            p.add_argument("out", help="output .jsonl, written atomically")
            p.add_argument("--keep-flagged", action="store_true", help="keep records the report flags")
        p.add_argument("--map", default=None, help="column mapping, e.g. prompt=question,chosen=a,rejected=b")
        p.add_argument("--kind", choices=KINDS, default=None, help="read the records as this kind")
        p.add_argument("--split", default="train", help="split of a hub dataset / DatasetDict directory")
        p.add_argument("--max-prompt-chars", type=int, default=DataConfig.max_prompt_chars)
        p.add_argument("--max-response-chars", type=int, default=DataConfig.max_response_chars)
        p.add_argument("--max-bytes", type=_count, default=None, metavar="N",
                       help=f"read at most N bytes of a file, after decompression (default {MAX_BYTES:,}; "
                            "suffixes K, M, G allowed)")
        p.add_argument("--max-record-chars", type=_count, default=None, metavar="N",
                       help=f"longest JSONL line / CSV record in characters (default {MAX_RECORD_CHARS:,})")
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help or a usage error; return instead of leaving the interpreter
        return int(e.code or 0)
    cfg = DataConfig(max_prompt_chars=args.max_prompt_chars, max_response_chars=args.max_response_chars)
    limits = {"max_bytes": args.max_bytes, "max_record_chars": args.max_record_chars}
    try:
        if args.command == "check":
            data = load_data(args.path, mapping=args.map, kind=args.kind, split=args.split, **limits)
            report = validate(data, cfg)
        else:
            data, report = convert_file(args.path, args.out, args.map, args.kind, cfg, args.keep_flagged,
                                        args.split, **limits)
    except (DataFormatError, OSError) as e:  # bad data, or a path that cannot be read or written
        print(" ".join(str(e).split("\n")), file=sys.stderr)
        return 2
    print(f"format: {data.format.name} ({data.format.title})\nrecords: {len(data)} {data.kind}")
    print(report.summary())
    if args.command == "convert":
        written = report.total if args.keep_flagged else report.kept
        print(f"wrote {written} records to {args.out}")
    return 0



# ------------------------------------------------------------------------------------------------ figures
COURSE_ANNOTATIONS = ("topic", "failure", "label_noise")  # what the course generator writes beside each pair


def has_course_annotations(prefs: pd.DataFrame) -> bool:
    """Do the preference pairs carry the course data's annotations (:data:`COURSE_ANNOTATIONS`)? Hub data does not:
    the cells and plots that read them apply to the course data only."""
    return all(c in prefs.columns for c in COURSE_ANNOTATIONS)


def data_overview(sft: pd.DataFrame, prefs: pd.DataFrame) -> Figure:
    """Four panels: answer lengths, topics, failure types (clean vs label noise), SFT demonstration quality.

    ``sft`` has prompt/response/topic/quality columns; ``prefs`` prompt/chosen/rejected/topic/failure/label_noise.
    Without the course's annotations (:func:`has_course_annotations`, and the demonstrations' topic and quality;
    e.g. Hub data): the answer lengths only
    (SFT response, chosen, rejected), with the 50th and 95th percentiles of the chosen answers' lengths.
    """
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd

    from .core.plots import color

    course = has_course_annotations(prefs) and {"topic", "quality"} <= set(sft.columns)
    noisy = prefs["label_noise"].astype(bool) if course else pd.Series(False, index=prefs.index)
    better = prefs["chosen"].where(~noisy, prefs["rejected"])  # on flipped pairs the stored 'chosen' is worse
    worse = prefs["rejected"].where(~noisy, prefs["chosen"])
    words = {label: [len(str(t).split()) for t in column] for label, column in
             (("SFT response", sft["response"]), ("better answer" if course else "chosen", better),
              ("worse answer" if course else "rejected", worse))}
    top = max(max(v, default=0) for v in words.values())
    fig, axes = plt.subplots(2, 2, figsize=(12, 7)) if course else plt.subplots(1, 1, figsize=(7, 4))
    ax = axes[0, 0] if course else axes
    bins = np.linspace(0, max(top, 10), 28)
    for i, (label, lengths) in enumerate(words.items()):
        ax.hist(lengths, bins=bins, alpha=0.5, color=color(i), label=label)
    ax.set(title="answer length", xlabel="words per answer", ylabel="answers")
    if not course:
        chosen = list(words.values())[1]
        for q, style in ((50, "--"), (95, ":")):
            ax.axvline(np.percentile(chosen, q), color="black", linestyle=style, linewidth=1, label=f"chosen: {q}th pct")
        ax.legend(loc="best", fontsize=8)
        fig.tight_layout()
        return fig
    ax.legend(loc="best", fontsize=8)
    topics = pd.DataFrame({"SFT": sft["topic"].value_counts(), "preferences": prefs["topic"].value_counts()})
    topics.sort_index().plot.barh(ax=axes[0, 1], title="topics", color=[color(0), color(1)])
    pair = noisy.map({False: "clean", True: "label noise (flipped)"}).rename(None)
    fails = prefs.groupby(["failure", pair]).size().unstack(fill_value=0)
    fails.plot.bar(ax=axes[1, 0], stacked=True, rot=20, title="failure shown by the worse answer",
                   color=[color(2), color(3)])
    sft["quality"].value_counts().plot.bar(ax=axes[1, 1], rot=20, title="SFT demonstrations by quality",
                                           color=color(0))
    axes[0, 1].set(xlabel="examples", ylabel="")
    axes[1, 0].set(xlabel="", ylabel="preference pairs")
    axes[1, 1].set(xlabel="", ylabel="demonstrations")
    for ax in (axes[0, 1], axes[1, 0]):
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def judge_heatmap(table: pd.DataFrame, title: str) -> Figure:
    """Heatmap of a (rows x criteria) table of scores in [0, 1], values written in the cells."""
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(1.2 * table.shape[1] + 2, 0.45 * table.shape[0] + 1.5))
    im = ax.imshow(table.values, cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(table.shape[1]), table.columns, rotation=20)
    ax.set_yticks(range(table.shape[0]), table.index)
    for (i, j), v in np.ndenumerate(table.values):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.03)
    ax.set_title(title)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
