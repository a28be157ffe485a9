"""Hub names -> local paths: the one override every loader of the course goes through.

The profiles name their models, judges and datasets by Hub id (``gpt2``, ``Dahoas/synthetic-instruct-gptj-pairwise``).
To run them offline (no machine of this project reaches the Hub), or on your own local copies, set
``RLHF_HUB_MAP`` to

* a JSON file: ``{"gpt2": "/models/gpt2", "Dahoas/synthetic-instruct-gptj-pairwise": "data/dahoas.jsonl"}``
  (a relative path is relative to the file), or
* inline pairs of absolute paths: ``gpt2=/models/gpt2;Dahoas/synthetic-instruct-gptj-pairwise=/data/dahoas.jsonl``
  (any value with a ``=`` is read as pairs, any other as the JSON file's path).

A mapped model is a folder written by ``save_pretrained`` (model and tokenizer); a mapped dataset is any file or
folder ``data_prep.read_rows`` reads. Names not in the map load from the Hub as usual.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

ENV = "RLHF_HUB_MAP"


class HubMapError(ValueError):
    """``RLHF_HUB_MAP`` cannot be read: the message names the file or entry."""


def _pairs(text: str) -> tuple[dict[str, str], Path | None, str]:
    """The raw entries of ``text`` (inline pairs if it has a ``=``, else a JSON file's path), the folder relative
    paths start from (None for inline pairs: they must be absolute), and where they came from (for messages)."""
    if "=" not in text:
        path = Path(text).expanduser()
        where = f"{ENV} ({path})"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise HubMapError(f"{where}: no such file") from None
        except json.JSONDecodeError as e:
            raise HubMapError(f"{where}: not valid JSON, line {e.lineno} column {e.colno}: {e.msg}") from None
        if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
            raise HubMapError(f'{where}: expected one JSON object of "hub name": "local path" strings')
        return data, path.parent, where
    entries = {}
    for item in filter(None, (s.strip() for s in text.split(";"))):
        name, sep, local = item.partition("=")
        if not (sep and name.strip() and local.strip()):
            raise HubMapError(f"{ENV}: '{item}' is not of the form hub_name=local_path (entries separated by ';')")
        entries[name.strip()] = local.strip()
    return entries, None, ENV


def hub_map(text: str | None = None) -> dict[str, str]:
    """``{hub name: absolute local path}`` from ``text`` (default: ``$RLHF_HUB_MAP``; unset or empty -> ``{}``).
    Every mapped path must exist: a missing one raises :class:`HubMapError` naming its entry."""
    text = os.environ.get(ENV, "") if text is None else text
    if not text.strip():
        return {}
    entries, base, where = _pairs(text.strip())
    resolved = {}
    for name, local in entries.items():
        path = Path(local).expanduser()
        if not path.is_absolute() and base is None:  # each notebook's kernel starts in notebooks/, a shell elsewhere
            raise HubMapError(f"{where}: entry '{name}' -> '{local}': give an absolute path (or use a JSON file)")
        path = path if path.is_absolute() else base / path
        if not path.exists():
            raise HubMapError(f"{where}: entry '{name}' -> '{local}': no such file or folder")
        resolved[name] = str(path.resolve())
    return resolved


def resolve(name: str | Path) -> str:
    """The local path ``$RLHF_HUB_MAP`` gives the Hub id ``name``, else ``name`` itself (as a string)."""
    return hub_map().get(str(name), str(name))


@contextlib.contextmanager
def offline_hint(name: str | Path) -> Iterator[None]:
    """Re-raise an ``OSError`` of loading the Hub id ``name`` (no network, no such repository) with what to do
    offline; an error about a local path passes unchanged."""
    try:
        yield
    except OSError as e:
        text = str(name)
        if Path(text).is_absolute() or text.count("/") > 1 or Path(text).exists():
            raise
        raise OSError(f"{text}: could not be loaded from the Hugging Face Hub ({type(e).__name__}). Without a network, "
                      f"map it to a local copy: {ENV}='{text}=/path/to/copy' (README: Local copies instead of the "
                      "Hub)") from e
