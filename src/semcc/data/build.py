"""Your own data set in the LEVIR-CC layout: a folder of pairs and a captions file -> what semcc trains on.

Beyond the paper (issue 14, "2. Their own data sets"): the paper trains on LEVIR-CC / LEVIR-MCI / LEVIR-CD only;
this module turns a user's folder into the LEVIR-CC layout (LEVIR-MCI with change masks) that the readers of
:mod:`semcc.data.levir` and the data module load, so that ``semcc fit`` trains on it like on LEVIR-CC.
``semcc dataset`` (:mod:`semcc.commands.dataset`) is its command.

Input:

* ``PAIRS/A/NAME`` (before) and ``PAIRS/B/NAME`` (after), same file names, any image Pillow reads
  (``.png``, ``.jpg``, ``.tif`` ... :data:`semcc.data.folder.IMAGE_SUFFIXES`); optional ``PAIRS/label/NAME``
  change masks (values 0/255, or 0/128/255 as LEVIR-MCI: 255 building, 128 road; channel 0 of a multi-channel
  file; a 1-bit mask counts as 0/255). When ``label/`` exists every pair needs its mask.
* A captions file, any number of captions per pair: CSV with a header naming the columns ``name`` and ``caption``
  (one row per caption; optional ``split``), or JSON Lines, one object per line,
  ``{"name": ..., "caption": "..."}`` or ``{"name": ..., "captions": ["...", ...]}`` (optional ``"split"``).
  ``name`` is the file name in ``A/`` (or its stem when that is unique).

Splits come from the file (``train``, ``val`` or ``test``) where it gives them; the other pairs are split by a
seeded ratio (default 0.8/0.1/0.1), stratified by changed / unchanged (a pair is unchanged when every caption is
a LEVIR-CC no-change sentence, :func:`semcc.data.text.is_no_change`): same names, captions, ratio and seed, same
splits.

Output (:func:`build_dataset`): ``OUT/LevirCCcaptions.json`` in LEVIR-CC's schema (``tokens``: the normalised
words of :func:`semcc.data.text.normalize_caption`; ``raw``: those words and `` .``, as LEVIR-CC writes them) and
``OUT/images/{split}/{A,B[,label]}/NAME.png``. PNG images are copied (or symlinked, ``link=True``); other formats
and resized pairs (``size``) are written as PNG (``NAME`` keeps its stem), labels always as 8-bit grey PNG.
Every file is written under a temporary name and renamed; the JSON is written last, so an interrupted build never
looks complete. A non-empty ``OUT`` is refused unless ``overwrite``.

Checks: everything is checked before anything is written, and every problem is collected
(:class:`DatasetBuildError`, one line per problem naming the file): a captioned pair without its A or B image
(or label), an image without captions (unless ``allow_uncaptioned``, which leaves such pairs out with a warning
that counts them), A / B / label of different sizes, an unreadable image, label values other than 0/128/255, an
empty caption, a pair given two splits, an unknown split, a CSV without the needed columns, a malformed JSON line
(with its line number). Duplicate captions of one pair are removed with a warning that counts them.
"""

from __future__ import annotations

import csv
import json
import os
import random
import shlex
import shutil
import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from semcc.data.folder import IMAGE_SUFFIXES
from semcc.data.images import LevirDataError, read_label, read_rgb
from semcc.data.text import is_no_change, normalize_caption

__all__ = [
    "CAPTIONS_FILE",
    "LABEL_VALUES",
    "SPLITS",
    "CaptionLine",
    "DatasetBuildError",
    "DatasetPlan",
    "DatasetSummary",
    "PlannedPair",
    "assign_splits",
    "build_dataset",
    "plan_dataset",
    "read_captions",
]

SPLITS: tuple[str, ...] = ("train", "val", "test")
#: The captions file of the LEVIR-CC layout.
CAPTIONS_FILE = "LevirCCcaptions.json"
#: Label values a change mask may hold: 0/255 (change), 0/128/255 (LEVIR-MCI: 128 road, 255 building).
LABEL_VALUES: frozenset[int] = frozenset({0, 128, 255})
#: The input size of ``configs/tiny.yaml``'s model (``encoder.img_size``).
TINY_IMG_SIZE = 256
#: ViT patch size of the shipped presets: a trainable input size is a multiple of it.
PATCH_SIZE = 16
_CSV_SUFFIXES = (".csv",)
_JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")


class DatasetBuildError(LevirDataError):
    """Problems in a folder of pairs or its captions file; ``problems`` holds every one (one line each, the file
    first). Nothing was written."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        more = len(self.problems) - 1
        tail = f" (and {more} more problem{'s' if more > 1 else ''}; nothing written)" if more else " (nothing written)"
        super().__init__(self.problems[0] + tail if self.problems else "no problems")


# ------------------------------------------------------------------------------------------------ captions
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


# ------------------------------------------------------------------------------------------------ splits
def _split_counts(n: int, ratio: Sequence[float]) -> list[int]:
    """``n`` items shared by ``ratio`` (largest remainders); each split with a share gets one when ``n`` allows."""
    total = sum(ratio)
    exact = [n * r / total for r in ratio]
    counts = [int(e) for e in exact]
    for i in sorted(range(len(ratio)), key=lambda i: (counts[i] - exact[i], i))[: n - sum(counts)]:
        counts[i] += 1
    wanted = [i for i, r in enumerate(ratio) if r > 0]
    if n >= len(wanted):
        for i in wanted:
            if counts[i] == 0:
                donor = max(range(len(counts)), key=lambda j: counts[j])
                counts[donor] -= 1
                counts[i] = 1
    return counts


def assign_splits(changed: dict[str, bool], ratio: Sequence[float] = (0.8, 0.1, 0.1),
                  seed: int = 0) -> dict[str, str]:
    """Split pairs ``{name: changed}`` into train / val / test by ``ratio``, stratified by changed / unchanged.

    Deterministic: each group is sorted and shuffled with ``random.Random(seed)``, the two groups are interleaved
    in proportion and the interleaved list is cut into consecutive runs, so each split holds about the same share
    of changed pairs. Each split with a positive share gets at least one pair when there are enough pairs.
    """
    if len(ratio) != len(SPLITS) or any(r < 0 for r in ratio) or sum(ratio) <= 0:
        raise ValueError(f"split ratio must be three non-negative numbers (train, val, test), not all 0: {ratio}")
    rng = random.Random(seed)
    groups = [sorted(n for n, c in changed.items() if c), sorted(n for n, c in changed.items() if not c)]
    for group in groups:
        rng.shuffle(group)
    order = [name for _, _, name in sorted(
        ((i + 0.5) / len(group), g, name) for g, group in enumerate(groups) for i, name in enumerate(group))]
    out: dict[str, str] = {}
    start = 0
    for split, count in zip(SPLITS, _split_counts(len(order), ratio), strict=True):
        out.update({name: split for name in order[start:start + count]})
        start += count
    return out


# ------------------------------------------------------------------------------------------------ the plan
@dataclass(frozen=True)
class PlannedPair:
    """One pair of the data set to write: sources, output name, split, normalised captions, size."""

    name: str
    split: str
    captions: tuple[str, ...]
    a: Path
    b: Path
    label: Path | None
    size: tuple[int, int]
    changed: bool
    label_changed: bool | None = None


@dataclass
class DatasetPlan:
    """What :func:`build_dataset` writes, every check passed (:func:`plan_dataset`)."""

    pairs_dir: Path
    captions_path: Path
    pairs: list[PlannedPair]
    has_labels: bool
    size: int | None
    split_from: str
    warnings: list[str] = field(default_factory=list)


def _images(folder: Path) -> tuple[dict[str, Path], int]:
    """The image files of ``folder`` by name, and how many other (non-hidden) files it holds."""
    found: dict[str, Path] = {}
    other = 0
    if folder.is_dir():
        for p in sorted(folder.iterdir()):
            if p.name.startswith(".") or not p.is_file():
                continue
            if p.suffix.lower() in IMAGE_SUFFIXES:
                found[p.name] = p
            else:
                other += 1
    return found, other


def _out_name(name: str) -> str:
    return name if name.lower().endswith(".png") else Path(name).stem + ".png"


def _examples(items: Sequence[str], n: int = 3) -> str:
    shown = ", ".join(str(i) for i in items[:n])
    return shown + (", ..." if len(items) > n else "")


def _parse_ratio(ratio: Sequence[float] | str) -> tuple[float, float, float]:
    try:
        values = [float(v) for v in (ratio.split(",") if isinstance(ratio, str) else ratio)]
    except ValueError:
        values = []
    if len(values) != 3 or any(not v >= 0 for v in values) or sum(values) <= 0:
        raise LevirDataError(f"--split-ratio {ratio!r}: expected three non-negative numbers train,val,test "
                             "(e.g. 0.8,0.1,0.1), not all 0")
    return values[0], values[1], values[2]


def _plan(pairs: Path, captions: Path, *, split_ratio: Sequence[float] | str, seed: int, size: int | None,
          allow_uncaptioned: bool) -> tuple[DatasetPlan | None, list[str]]:
    problems: list[str] = []
    warnings: list[str] = []
    try:
        ratio = _parse_ratio(split_ratio)
    except LevirDataError as err:
        problems.append(str(err))
        ratio = (0.8, 0.1, 0.1)
    if size is not None and size < 1:
        problems.append(f"--size {size}: must be a positive number of pixels")
        size = None
    for sub in ("A", "B"):
        if not (pairs / sub).is_dir():
            problems.append(f"{pairs / sub}: folder is missing (expected {pairs}/A and {pairs}/B, and optional "
                            f"{pairs}/label)")
    lines, caption_problems, lost = _read_captions(captions)
    problems += caption_problems
    if not lines or not all((pairs / sub).is_dir() for sub in ("A", "B")):
        return None, problems  # nothing to match: no captions, or no A/ or B/ (not one problem per pair)

    found = {sub: _images(pairs / sub) for sub in ("A", "B", "label")}
    images = {sub: found[sub][0] for sub in found}
    if ignored := sum(found[sub][1] for sub in found):
        warnings.append(f"{pairs}: {ignored} files in A/, B/ or label/ are not images ({', '.join(IMAGE_SUFFIXES)}) "
                        "and were ignored")
    has_labels = (pairs / "label").is_dir()
    in_pairs = sorted(set(images["A"]) | set(images["B"]))
    stems: dict[str, list[str]] = {}
    for n in in_pairs:
        stems.setdefault(Path(n).stem, []).append(n)
    by_stem = Counter(Path(n).stem for n in images["label"])
    # A label of another format than its pair's images (x.jpg, label x.png): found by its stem when that is unique.
    label_stems = {Path(n).stem: p for n, p in images["label"].items() if by_stem[Path(n).stem] == 1}

    # Captions per pair (file names as in A/ and B/), the split given, the first line naming the pair.
    by_name: dict[str, list[str]] = {}
    split_of: dict[str, tuple[str, str]] = {}
    first_line: dict[str, str] = {}
    conflicts: set[tuple[str, str]] = set()
    duplicates = 0
    dup_examples: list[str] = []
    for line in lines:
        name = line.name
        if name not in images["A"] and name not in images["B"] and name in stems:
            if len(stems[name]) > 1:
                problems.append(f"{line.where}: name {name!r} matches {', '.join(stems[name])} in {pairs}; give the "
                                "file name")
                lost.append(line.where)  # it may hold the captions of a pair that would look uncaptioned
                continue
            name = stems[name][0]
        first_line.setdefault(name, line.where)
        texts = by_name.setdefault(name, [])
        for caption in line.captions:
            text = normalize_caption(caption)
            if not text:
                problems.append(f"{line.where}: empty caption for {line.name!r}")
            elif text in texts:
                duplicates += 1
                dup_examples.append(name)
            else:
                texts.append(text)
        if line.split is not None:
            earlier = split_of.setdefault(name, (line.split, line.where))
            if earlier[0] != line.split and (name, line.split) not in conflicts:  # once per pair and split
                conflicts.add((name, line.split))
                problems.append(f"{line.where}: {name!r} is in split {line.split!r} here but in {earlier[0]!r} at "
                                f"{earlier[1]} (a pair belongs to one split)")
    if duplicates:
        warnings.append(f"{captions}: {duplicates} duplicate caption{'s' if duplicates > 1 else ''} removed (the "
                        f"same words as another caption of the same pair: {_examples(sorted(set(dup_examples)))})")

    planned: list[tuple[str, tuple[str, ...], Path, Path, Path | None]] = []
    for name, texts in by_name.items():
        where = first_line[name]
        paths = {sub: images[sub].get(name, pairs / sub / name) for sub in ("A", "B")}
        paths["label"] = images["label"].get(name) or label_stems.get(Path(name).stem) or pairs / "label" / name
        ok = True
        for sub in ("A", "B") + (("label",) if has_labels else ()):
            if not paths[sub].is_file():
                ok = False
                what = "label" if sub == "label" else "image"
                hint = " (label/ exists, so every pair needs its mask)" if sub == "label" else ""
                problems.append(f"{paths[sub]}: {what} file is missing (pair captioned at {where}){hint}")
        if ok and texts:
            planned.append((name, tuple(texts), paths["A"], paths["B"], paths["label"] if has_labels else None))

    uncaptioned = [n for n in in_pairs if n not in by_name]
    if uncaptioned and not lost:  # a line whose name could not be read may hold their captions: not reported twice
        where = [images["A"].get(n) or images["B"][n] for n in uncaptioned]
        if allow_uncaptioned:
            warnings.append(f"{pairs}: {len(uncaptioned)} pair{'s' if len(uncaptioned) > 1 else ''} without captions "
                            f"in {captions} left out: {_examples([str(p) for p in where])}")
        else:
            problems += [f"{p}: no captions in {captions} (caption it, or pass --allow-uncaptioned to leave "
                         "uncaptioned pairs out)" for p in where]
    used_labels = {p[4].name for p in planned if p[4] is not None}
    if has_labels and (extra := sorted(set(images["label"]) - used_labels)):
        warnings.append(f"{pairs / 'label'}: {len(extra)} label{'s' if len(extra) > 1 else ''} of no captioned pair "
                        f"ignored: {_examples(extra)}")

    # Output names: NAME.png for PNG, STEM.png for other formats; two sources may not share one.
    out_names: dict[str, str] = {}
    for name, *_ in planned:
        out = _out_name(name)
        if out in out_names:
            problems.append(f"{pairs / 'A' / name}: would be written as {out}, as {pairs / 'A' / out_names[out]} is "
                            "(rename one)")
        out_names.setdefault(out, name)

    # Pixels: every image decoded, sizes compared, label values checked.
    checked: list[tuple[str, tuple[str, ...], Path, Path, Path | None, tuple[int, int], bool | None]] = []
    for name, texts, a, b, label in planned:
        shapes: dict[Path, tuple[int, int]] = {}
        label_changed = None
        for path in (a, b):
            try:
                arr = read_rgb(path)
            except LevirDataError as err:
                problems.append(str(err))
                continue
            shapes[path] = (arr.shape[1], arr.shape[0])
        if label is not None:
            try:
                mask = read_label(label)
            except LevirDataError as err:
                problems.append(str(err))
            else:
                shapes[label] = (mask.shape[1], mask.shape[0])
                values = [int(v) for v in np.unique(mask)]
                if bad := [v for v in values if v not in LABEL_VALUES]:
                    problems.append(f"{label}: label values {_examples(bad, 5)} are not change-mask values "
                                    "(0/255, or 0/128/255 as LEVIR-MCI)")
                label_changed = any(v > 0 for v in values)
        if a in shapes:
            for path in (b, label):
                if path in shapes and shapes[path] != shapes[a]:
                    w, h = shapes[path]
                    problems.append(f"{path}: size {w}x{h} does not match {a} ({shapes[a][0]}x{shapes[a][1]})")
        elif b in shapes and label in shapes and shapes[label] != shapes[b]:
            problems.append(f"{label}: size {shapes[label][0]}x{shapes[label][1]} does not match {b} "
                            f"({shapes[b][0]}x{shapes[b][1]})")
        if a in shapes:
            checked.append((name, texts, a, b, label, shapes[a], label_changed))

    if not checked and not problems:
        problems.append(f"{captions}: no captioned pair with images in {pairs}")
    if problems:
        return None, problems

    changed = {name: not all(is_no_change(t) for t in texts) for name, texts, *_ in checked}
    given = {name: s for name, (s, _) in split_of.items() if name in changed}
    rest = {n: c for n, c in changed.items() if n not in given}
    splits = {**given, **assign_splits(rest, ratio, seed)}
    ratio_text = ",".join(f"{r:g}" for r in ratio)
    split_from = ("the captions file" if not rest else
                  f"ratio {ratio_text}, seed {seed}, stratified by changed/unchanged" if not given else
                  f"the captions file ({len(given)} pairs), ratio {ratio_text}, seed {seed} for the other {len(rest)}")
    result = [PlannedPair(_out_name(name), splits[name], texts, a, b, label, shape, changed[name], label_changed)
              for name, texts, a, b, label, shape, label_changed in checked]
    result.sort(key=lambda p: (SPLITS.index(p.split), p.name))
    if has_labels:
        quiet = [p.name for p in result if not p.changed and p.label_changed]
        empty_masks = [p.name for p in result if p.changed and p.label_changed is False]
        if quiet:
            warnings.append(f"{pairs / 'label'}: {len(quiet)} pairs captioned as unchanged have changed pixels in "
                            f"their label: {_examples(quiet)}")
        if empty_masks:
            warnings.append(f"{pairs / 'label'}: {len(empty_masks)} pairs captioned as changed have an empty label "
                            f"(fine if the change is of a class the masks do not mark): {_examples(empty_masks)}")
    plan = DatasetPlan(pairs, captions, result, has_labels, size, split_from, warnings)
    return plan, []


def plan_dataset(pairs: str | Path, captions: str | Path, *, split_ratio: Sequence[float] | str = (0.8, 0.1, 0.1),
                 seed: int = 0, size: int | None = None, allow_uncaptioned: bool = False) -> DatasetPlan:
    """Check a folder of pairs and its captions file and plan the data set (see the module docstring).

    Raises :class:`DatasetBuildError` with every problem found. Writes nothing.
    """
    plan, problems = _plan(Path(pairs), Path(captions), split_ratio=split_ratio, seed=seed, size=size,
                           allow_uncaptioned=allow_uncaptioned)
    if problems or plan is None:
        raise DatasetBuildError(problems)
    return plan


# ------------------------------------------------------------------------------------------------ writing
def _out_problems(out: Path, pairs: Path, overwrite: bool) -> list[str]:
    if out.exists() and not out.is_dir():
        return [f"{out}: exists and is not a folder"]
    resolved, source = out.resolve(), pairs.resolve()
    if resolved == source or source.is_relative_to(resolved) or any(
            resolved.is_relative_to(source / sub) for sub in ("A", "B", "label")):
        return [f"{out}: holds or is inside the input folder {pairs}; choose another --out"]
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        return [f"{out}: folder is not empty (pass --overwrite to replace the data set there)"]
    return []


def _replace_into(dst: Path, write: Callable[[Path], object]) -> None:
    """Write ``dst`` through a temporary name, then rename (never a half-written file under ``dst``)."""
    tmp = dst.with_name(f".{dst.name}.tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    write(tmp)
    os.replace(tmp, dst)


def _write_pair(pair: PlannedPair, folder: Path, size: int | None, link: bool) -> tuple[int, int]:
    """Write one pair under ``folder/{A,B,label}``; returns its size as written."""
    final = (size, size) if size else pair.size
    for sub, src in (("A", pair.a), ("B", pair.b)):
        dst = folder / sub / pair.name
        if size is None and src.suffix.lower() == ".png":
            if link:
                _replace_into(dst, lambda tmp, src=src: tmp.symlink_to(src.resolve()))
            else:
                _replace_into(dst, lambda tmp, src=src: shutil.copyfile(src, tmp))
            continue
        im = Image.fromarray(read_rgb(src))
        if im.size != final:
            im = im.resize(final, Image.Resampling.BILINEAR)
        _replace_into(dst, lambda tmp, im=im: im.save(tmp, format="PNG"))
    if pair.label is not None:
        im = Image.fromarray(read_label(pair.label), mode="L")
        if im.size != final:
            im = im.resize(final, Image.Resampling.NEAREST)
        _replace_into(folder / "label" / pair.name, lambda tmp: im.save(tmp, format="PNG"))
    return final


@dataclass
class DatasetSummary:
    """What :func:`build_dataset` wrote, and the ``semcc fit`` options that train ``configs/tiny.yaml`` on it.

    Attributes:
        out: the data set folder (LEVIR-CC layout; LEVIR-MCI when ``labels``).
        pairs, changed: pairs and changed pairs per split.
        captions: captions per pair.
        sizes: pairs per image size (width, height) as written.
        labels: whether the pairs have change masks.
        split_from: where the splits came from.
        warnings: what was removed, left out or looks inconsistent (counted).
        fit_args: the options of ``semcc fit`` (after the command name) that train the tiny model on ``out``;
            ``None`` when it cannot train as built (``fit_note`` says why).
    """

    out: Path
    pairs: dict[str, int]
    changed: dict[str, int]
    captions: list[int]
    sizes: dict[tuple[int, int], int]
    labels: bool
    split_from: str
    warnings: list[str]
    fit_args: list[str] | None
    fit_note: str

    @property
    def fit_command(self) -> str | None:
        """``semcc fit ...`` as one shell line (``None`` when :attr:`fit_args` is)."""
        return None if self.fit_args is None else shlex.join(["semcc", "fit", *self.fit_args])

    def report(self) -> str:
        """The summary ``semcc dataset`` prints."""
        splits = [s for s in SPLITS if self.pairs.get(s)]
        total = sum(self.pairs.values())
        layout = "{" + ",".join(splits) + "}/{A,B" + (",label" if self.labels else "") + "}"
        lines = [f"wrote {self.out}: {CAPTIONS_FILE} and images/{layout}, {total} pairs "
                 f"({'LEVIR-MCI layout: captions and change masks' if self.labels else 'LEVIR-CC layout: captions'})"]
        for s in splits:
            n, c = self.pairs[s], self.changed[s]
            lines.append(f"  {s + ':':<6} {n:>6} pair{'s' if n != 1 else ''}, {c} changed, {n - c} unchanged")
        caps = self.captions
        lines.append(f"  captions: {sum(caps)}, {min(caps)}-{max(caps)} per pair (mean {statistics.mean(caps):.1f})")
        sizes = ", ".join(f"{w}x{h} px ({n} pairs)" for (w, h), n in sorted(self.sizes.items(), key=lambda x: -x[1]))
        lines.append(f"  images: {sizes}")
        lines.append(f"  splits: from {self.split_from}")
        lines += [f"warning: {w}" for w in self.warnings]
        if self.fit_command is not None:
            lines += ["", "to train configs/tiny.yaml (the default of `semcc fit`) on it:", f"  {self.fit_command}",
                      f"({self.fit_note})"]
        else:
            lines += ["", f"not trainable as built: {self.fit_note}"]
        return "\n".join(lines)


def _fit_args(out: Path, labels: bool, sizes: Iterable[tuple[int, int]], pairs: dict[str, int]
              ) -> tuple[list[str] | None, str]:
    """The ``semcc fit`` options for ``configs/tiny.yaml`` on the data set, or ``None`` and why not."""
    shapes = set(sizes)
    if len(shapes) != 1 or (first := next(iter(shapes)))[0] != first[1] or first[0] % PATCH_SIZE:
        shown = ", ".join(f"{w}x{h}" for w, h in sorted(shapes))
        return None, (f"the model trains on pairs of one square size, a multiple of {PATCH_SIZE} px (tiny: "
                      f"{TINY_IMG_SIZE}); these are {shown}: rebuild with --size {TINY_IMG_SIZE}")
    if not pairs.get("train") or not pairs.get("val"):
        return None, ("`semcc fit` needs train and val pairs (validation reads the val split); give some pairs "
                      "the split val, or use --split-ratio")
    args = ["--data.synth_root", "null", "--data.cc_root", str(out), "--data.tokenizer_dir", str(out / "tokenizer")]
    if labels:
        # Phase i (CD) reads the pairs' masks as LEVIR-CD tiles (images/{split}/{A,B,label}), one crop per pair.
        args += ["--data.joint_root", str(out), "--data.cd_root", str(out / "images"),
                 "--data.cd.samples_per_tile", "4"]
        note = ("the three stages of Sec. III-F: CD on the masks (images/ read as LEVIR-CD tiles, 4 flipped crops "
                "per pair and epoch), captions, then both")
    else:
        args += ["--model.strategy", "caption_only"]
        note = ("no change masks, so no CD phase: strategy caption_only (the encoder, the neck and the caption head "
                "train on the captions)")
    side = next(iter(shapes))[0]
    if side != TINY_IMG_SIZE:
        args += ["--data.cd.crop_size", str(side), "--model.model.init_args.encoder.init_args.img_size", str(side)]
        note += f"; the model built for {side} px pairs (tiny: {TINY_IMG_SIZE})"
    return args, note


def build_dataset(pairs: str | Path, captions: str | Path, out: str | Path, *,
                  split_ratio: Sequence[float] | str = (0.8, 0.1, 0.1), seed: int = 0, size: int | None = None,
                  link: bool = False, overwrite: bool = False, allow_uncaptioned: bool = False) -> DatasetSummary:
    """Build a LEVIR-CC-format data set in ``out`` from the folder ``pairs`` and the file ``captions``.

    Args:
        pairs: the folder holding ``A/``, ``B/`` and optional ``label/`` (see the module docstring).
        captions: CSV (``name``, ``caption``, optional ``split``) or JSON Lines captions file.
        out: the data set folder to write (must be empty or missing unless ``overwrite``).
        split_ratio: train, val, test shares for the pairs whose split the file does not give (or ``"0.8,0.1,0.1"``).
        seed: seed of the ratio split.
        size: resize every pair to ``size x size`` (images bilinear, labels nearest); ``None`` keeps the sizes.
        link: symlink the PNG images instead of copying them (images that are converted or resized are written).
        overwrite: replace the data set in a non-empty ``out`` (its captions JSON, ``images/`` and ``tokenizer/``).
        allow_uncaptioned: leave pairs without captions out (counted in a warning) instead of refusing them.

    Raises :class:`DatasetBuildError` with every problem (nothing written).
    """
    pairs, captions, out = Path(pairs), Path(captions), Path(out)
    plan, problems = _plan(pairs, captions, split_ratio=split_ratio, seed=seed, size=size,
                           allow_uncaptioned=allow_uncaptioned)
    problems += _out_problems(out, pairs, overwrite)
    if problems or plan is None:
        raise DatasetBuildError(problems)

    # The captions JSON goes first and comes back last: until then the folder is not a data set.
    (out / CAPTIONS_FILE).unlink(missing_ok=True)
    for stale in ("images", "tokenizer"):
        if (out / stale).is_dir():
            shutil.rmtree(out / stale)
    (out / "tokenizer.lock").unlink(missing_ok=True)
    subs = ("A", "B", "label") if plan.has_labels else ("A", "B")
    for split in {p.split for p in plan.pairs}:
        for sub in subs:
            (out / "images" / split / sub).mkdir(parents=True, exist_ok=True)

    images: list[dict[str, Any]] = []
    sizes: Counter[tuple[int, int]] = Counter()
    sentid = 0
    for imgid, pair in enumerate(plan.pairs):
        sizes[_write_pair(pair, out / "images" / pair.split, plan.size, link)] += 1
        sentences = []
        for text in pair.captions:
            sentences.append({"tokens": text.split(), "raw": f"{text} .", "imgid": imgid, "sentid": sentid})
            sentid += 1
        images.append({"filepath": pair.split, "filename": pair.name, "imgid": imgid, "split": pair.split,
                       "sentences": sentences})
    _replace_into(out / CAPTIONS_FILE, lambda tmp: tmp.write_text(json.dumps({"images": images}), encoding="utf-8"))

    counts = {s: sum(p.split == s for p in plan.pairs) for s in SPLITS}
    changed = {s: sum(p.split == s and p.changed for p in plan.pairs) for s in SPLITS}
    fit_args, note = _fit_args(out, plan.has_labels, sizes, counts)
    return DatasetSummary(out, counts, changed, [len(p.captions) for p in plan.pairs], dict(sizes), plan.has_labels,
                          plan.split_from, plan.warnings, fit_args, note)
