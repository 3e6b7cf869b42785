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

import json
import os
import shutil
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from semcc.data.build_inputs import CaptionLine, _read_captions, read_captions
from semcc.data.build_splits import SPLITS, _parse_ratio, assign_splits
from semcc.data.build_summary import CAPTIONS_FILE, DatasetSummary, _fit_args
from semcc.data.build_summary import PATCH_SIZE as PATCH_SIZE
from semcc.data.build_summary import TINY_IMG_SIZE as TINY_IMG_SIZE
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

#: Label values a change mask may hold: 0/255 (change), 0/128/255 (LEVIR-MCI: 128 road, 255 building).
LABEL_VALUES: frozenset[int] = frozenset({0, 128, 255})


class DatasetBuildError(LevirDataError):
    """Problems in a folder of pairs or its captions file; ``problems`` holds every one (one line each, the file
    first). Nothing was written."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        more = len(self.problems) - 1
        tail = f" (and {more} more problem{'s' if more > 1 else ''}; nothing written)" if more else " (nothing written)"
        super().__init__(self.problems[0] + tail if self.problems else "no problems")


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
