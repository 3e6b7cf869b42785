"""Captions files of :mod:`semcc.data.build`: reading a user's CSV or JSON Lines captions into its lines.

Beyond the paper (issue 14, "2. Their own data sets"): the captions file that names a user's pairs, read line by
line with every problem collected (file first, with line numbers), before :func:`semcc.data.build.plan_dataset`
matches the lines to the images and checks them.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from semcc.data.build_splits import SPLITS

__all__ = ["CaptionLine", "read_captions"]

_CSV_SUFFIXES = (".csv",)
_JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")


@dataclass(frozen=True)
class CaptionLine:
    """One CSV row or JSON line of a captions file: a pair's name, its captions as written, its split if given."""

    name: str
    captions: tuple[str, ...]
    split: str | None
    where: str


def _split_value(value: Any, where: str, problems: list[str]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        problems.append(f"{where}: split must be text (train, val or test), got {value!r}")
        return None
    split = value.strip().lower()
    if not split:
        return None
    if split not in SPLITS:
        problems.append(f"{where}: unknown split {value.strip()!r} (train, val or test)")
        return None
    return split


def _name_value(value: Any, where: str, problems: list[str]) -> str | None:
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{where}: no pair name (the 'name' of a file in A/ and B/)")
        return None
    name = value.strip()
    if "/" in name or "\\" in name:
        problems.append(f"{where}: name {name!r} is a path; give the file name in A/ and B/")
        return None
    return name


def _read_csv(path: Path, text: str, problems: list[str], lost: list[str]) -> list[CaptionLine]:
    reader = csv.DictReader(text.splitlines(keepends=True))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    if missing := [c for c in ("name", "caption") if c not in header]:
        found = ", ".join(repr(h) for h in header) or "none"
        problems.append(f"{path}: the CSV header has no {' or '.join(repr(m) for m in missing)} column "
                        f"(columns: {found}; needed: name, caption, optional split)")
        return []
    reader.fieldnames = header
    lines = []
    for row in reader:
        where = f"{path} line {reader.line_num}"
        if not any((v or "").strip() for k, v in row.items() if k is not None):
            continue  # a blank row
        name = _name_value(row.get("name"), where, problems)
        split = _split_value(row.get("split"), where, problems) if "split" in header else None
        if name is not None:
            lines.append(CaptionLine(name, (row.get("caption") or "",), split, where))
        else:
            lost.append(where)
    return lines


def _read_jsonl(path: Path, text: str, problems: list[str], lost: list[str]) -> list[CaptionLine]:
    lines = []
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        where = f"{path} line {number}"
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as err:
            problems.append(f"{where}: malformed JSON at column {err.colno}: {err.msg}")
            lost.append(where)
            continue
        if not isinstance(obj, dict):
            problems.append(f"{where}: expected an object {{\"name\": ..., \"caption(s)\": ...}}, got "
                            f"{type(obj).__name__}")
            lost.append(where)
            continue
        name = _name_value(obj.get("name"), where, problems)
        split = _split_value(obj.get("split"), where, problems)
        captions: list[str] = []
        if "caption" not in obj and "captions" not in obj:
            problems.append(f"{where}: no 'caption' (text) or 'captions' (a list of texts)")
        if "caption" in obj:
            if isinstance(obj["caption"], str):
                captions.append(obj["caption"])
            else:
                problems.append(f"{where}: 'caption' must be text, got {type(obj['caption']).__name__}")
        if "captions" in obj:
            value = obj["captions"]
            if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
                problems.append(f"{where}: 'captions' must be a list of texts")
            elif not value:
                problems.append(f"{where}: 'captions' is an empty list")
            else:
                captions.extend(value)
        if name is not None:  # kept even without valid captions: the pair is not reported as uncaptioned too
            lines.append(CaptionLine(name, tuple(captions), split, where))
        else:
            lost.append(where)
    return lines


def read_captions(path: str | Path) -> tuple[list[CaptionLine], list[str]]:
    """Read a captions file (CSV or JSON Lines, by its ending: ``.csv``; ``.jsonl`` / ``.ndjson`` / ``.json``;
    otherwise by its first character) into its lines and the problems found (file first, with line numbers)."""
    lines, problems, _ = _read_captions(Path(path))
    return lines, problems


def _read_captions(path: Path) -> tuple[list[CaptionLine], list[str], list[str]]:
    """:func:`read_captions`, and the places of the lines whose pair name could not be read (none: the whole
    file could not be read)."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        return [], [f"{path}: captions file is missing"], []
    except IsADirectoryError:
        return [], [f"{path}: is a folder, not a captions file"], []
    except OSError as err:
        return [], [f"{path}: cannot read the captions file ({err.strerror or err})"], []
    except UnicodeDecodeError as err:
        return [], [f"{path}: not UTF-8 text ({err.reason} at byte {err.start})"], []
    problems: list[str] = []
    lost: list[str] = []
    suffix = path.suffix.lower()
    jsonl = suffix in _JSONL_SUFFIXES or (suffix not in _CSV_SUFFIXES and text.lstrip().startswith("{"))
    lines = _read_jsonl(path, text, problems, lost) if jsonl else _read_csv(path, text, problems, lost)
    if not lines and not problems:
        problems.append(f"{path}: no captions")
    return lines, problems, lost
