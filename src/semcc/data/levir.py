"""Readers for the LEVIR family: LEVIR-CC (captions), LEVIR-MCI (captions + change masks), LEVIR-CD (tiles).

These produce the inputs of paper Eq. 1 (the bi-temporal pair I_1, I_2) and the labels of Eq. 9 (y_cd,
y_cc): the three training sets D_cc, D_cd-cc and D_cd of Sec. III-F. SynthLEVIR writes the same layouts,
so the same classes read real and generated data.

Layouts (as the data sets are published; the README's "Data" section):

* LEVIR-CC: ``root/LevirCCcaptions.json`` + ``root/images/{split}/{A,B}/NAME.png``.
* LEVIR-MCI: LEVIR-CC plus ``root/images/{split}/label/NAME.png`` (channel 0: 255 building, 128 road).
* LEVIR-CD: ``root/{split}/{A,B,label}/NAME.png`` (label 0/255, building change).

Errors and conversions (all errors are :class:`LevirDataError`, a ``ValueError`` whose message starts with
the offending path):

* At construction: unknown split, missing or malformed captions JSON (with the JSON parser's position),
  an entry without ``filename``/``split``/``sentences`` or a sentence without ``tokens``/``raw``, a pair
  whose A, B (or label) file does not exist.
* On first access of a sample: an unreadable / corrupt PNG, A and B (or label) of different sizes.
* Conversions, not errors: a grey image is repeated to three channels, an RGBA or LA image has its alpha
  dropped, a palette image is converted to RGB; a multi-channel label is read from channel 0 (the readers
  and :class:`~semcc.data.images.Normalizer` of :mod:`semcc.data.images`).

Samples are :class:`ChangeSample` dictionaries. ``image_a``/``image_b`` are normalised float tensors
``[3, H, W]``; ``image`` stacks them as ``[2, 3, H, W]`` and ``mask`` is ``[H, W]`` int64, the keys that
torchgeo's change-detection datasets use.
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict, TypeVar

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from semcc.data.images import LevirDataError, Normalizer, check_same_size, pil_to_rgb, read_label, read_rgb
from semcc.data.text import is_no_change, normalize_caption

__all__ = [
    "LEVIR_CC_MEAN",
    "LEVIR_CC_STD",
    "MCI_CLASSES",
    "ChangeSample",
    "LevirCCDataset",
    "LevirCDDataset",
    "LevirDataError",
    "LevirMCIDataset",
    "Normalizer",
    "load_levir_cc_captions",
    "pil_to_rgb",
    "read_rgb",
    "sentence_text",
]
# LevirDataError, Normalizer, pil_to_rgb and read_rgb live in semcc.data.images; imported from here too.

#: LEVIR-CC channel statistics (RGB, on the 0-1 scale): the values used by RSICCformer / Chg2Cap.
LEVIR_CC_MEAN: tuple[float, float, float] = (100.6790 / 255, 99.5023 / 255, 84.9932 / 255)
LEVIR_CC_STD: tuple[float, float, float] = (50.9820 / 255, 48.4838 / 255, 44.7057 / 255)

#: Class ids of LEVIR-MCI masks after mapping (label value -> class).
MCI_CLASSES: tuple[str, ...] = ("none", "road", "building")
_MCI_VALUES = {0: 0, 128: 1, 255: 2}

SPLITS = ("train", "val", "test")


class ChangeSample(TypedDict):
    """One bi-temporal sample. ``mask`` is present for LEVIR-MCI and LEVIR-CD, ``captions`` may be empty."""

    image_a: torch.Tensor
    image_b: torch.Tensor
    image: torch.Tensor
    mask: NotRequired[torch.Tensor]
    captions: list[str]
    name: str
    changed: bool
    transient: NotRequired[bool]


_T = TypeVar("_T")

#: A training augmentation (:class:`semcc.data.augment.PairAugment`): ``(a, b, key)`` -> the normalised pair and
#: whether its draw was a one-off (``transient``: the frozen-feature cache must not keep it).
PairAugmentFn = Callable[[np.ndarray, np.ndarray, "str | None"], tuple[torch.Tensor, torch.Tensor, bool]]


def _cached(cache: dict[str, Any] | None, key: str, compute: Callable[[], _T]) -> _T:
    """``cache[key]``, computed by ``compute()`` on first use; ``cache=None`` (no caching) computes every time."""
    if cache is None:
        return compute()
    if key not in cache:
        cache[key] = compute()
    return cache[key]


def _check_split(split: str, root: Path, available: Sequence[str]) -> None:
    if split not in available:
        raise LevirDataError(f"{root}: unknown split {split!r}; available: {', '.join(available) or 'none'}")


# ------------------------------------------------------------------------------------------- captions
def load_levir_cc_captions(path: str | Path) -> list[dict]:
    """Load and validate a ``LevirCCcaptions.json`` file (or a gzipped ``.json.gz``); returns its ``images``.

    Raises :class:`LevirDataError` naming the file and, for a bad entry, its index and missing key.
    """
    path = Path(path)
    if not path.is_file():
        raise LevirDataError(f"{path}: captions file is missing")
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rt", encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, EOFError) as err:
        raise LevirDataError(f"{path}: cannot read the captions file ({err})") from None
    except json.JSONDecodeError as err:
        raise LevirDataError(
            f"{path}: malformed JSON at line {err.lineno}, column {err.colno}: {err.msg}"
        ) from None
    except UnicodeDecodeError as err:
        raise LevirDataError(f"{path}: not UTF-8 text: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise LevirDataError(f"{path}: expected an object with an 'images' list (LevirCCcaptions schema)")
    images = data["images"]
    for i, entry in enumerate(images):
        if not isinstance(entry, dict):
            raise LevirDataError(f"{path}: images[{i}] is not an object")
        for key in ("filename", "split", "sentences"):
            if key not in entry:
                raise LevirDataError(f"{path}: images[{i}] has no {key!r}")
        if not isinstance(entry["sentences"], list) or not entry["sentences"]:
            raise LevirDataError(f"{path}: images[{i}] ({entry['filename']}) has no sentences")
        for j, sent in enumerate(entry["sentences"]):
            if not isinstance(sent, dict) or not ("tokens" in sent or "raw" in sent):
                raise LevirDataError(
                    f"{path}: images[{i}] ({entry['filename']}) sentence {j} has neither 'tokens' nor 'raw'"
                )
    return images


def sentence_text(sent: dict) -> str:
    """A LevirCCcaptions sentence as normalised text (its ``tokens``, else its normalised ``raw``)."""
    tokens = sent.get("tokens")
    if isinstance(tokens, list) and tokens:
        return " ".join(str(t) for t in tokens)
    return normalize_caption(str(sent.get("raw", "")))


# ------------------------------------------------------------------------------------------- datasets
class LevirCCDataset(Dataset[ChangeSample]):
    """LEVIR-CC: bi-temporal pairs with five reference captions each (D_cc of Sec. III-F).

    Args:
        root: folder holding ``LevirCCcaptions.json`` and ``images/``.
        split: ``train``, ``val`` or ``test`` (any split named in the JSON).
        captions_file: the JSON file name or path (relative to ``root``).
        mean, std: RGB normalisation on the 0-1 scale (default: LEVIR-CC statistics).
        names: keep only these file names (e.g. the pairs that have images on disk).
        cache_images: keep the decoded images (``uint8``, and labels for LEVIR-MCI) in memory after the first
            read, per process: for small data sets read many times (several epochs, repeated phases).
        augment: look-alike change augmentation of each read pair (:class:`semcc.data.augment.PairAugment`, keyed
            by the pair's file name; samples then carry ``transient``); training splits only.
    """

    has_mask = False

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        captions_file: str = "LevirCCcaptions.json",
        mean: Sequence[float] = LEVIR_CC_MEAN,
        std: Sequence[float] = LEVIR_CC_STD,
        names: Sequence[str] | None = None,
        cache_images: bool = False,
        augment: PairAugmentFn | None = None,
    ) -> None:
        self.root = Path(root)
        self.augment = augment
        self.cache_images = cache_images
        self._cache: dict[str, Any] | None = {} if cache_images else None
        self.split = split
        self.captions_path = self.root / captions_file
        images = load_levir_cc_captions(self.captions_path)
        available = sorted({str(e["split"]) for e in images})
        _check_split(split, self.captions_path, available)
        keep = set(names) if names is not None else None
        self.entries = [
            e for e in images if e["split"] == split and (keep is None or e["filename"] in keep)
        ]
        if keep is not None:
            found = {e["filename"] for e in self.entries}
            if missing := sorted(keep - found):
                raise LevirDataError(f"{self.captions_path}: no {split} entries named {missing[:5]}")
        self.normalize = Normalizer(mean, std)
        for entry in self.entries:
            for path in self._paths(entry):
                if not path.is_file():
                    raise LevirDataError(f"{path}: image file is missing (listed in {self.captions_path})")

    def _folder(self, entry: dict) -> Path:
        return self.root / "images" / str(entry.get("filepath") or entry["split"])

    def _paths(self, entry: dict) -> list[Path]:
        folder = self._folder(entry)
        return [folder / "A" / entry["filename"], folder / "B" / entry["filename"]]

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def names(self) -> list[str]:
        return [e["filename"] for e in self.entries]

    def captions(self, index: int) -> list[str]:
        """The reference captions of pair ``index`` (normalised text)."""
        return [sentence_text(s) for s in self.entries[index]["sentences"]]

    def _load_pair(self, entry: dict) -> tuple[np.ndarray, np.ndarray]:
        def read() -> tuple[np.ndarray, np.ndarray]:
            path_a, path_b = self._paths(entry)[:2]
            a, b = read_rgb(path_a), read_rgb(path_b)
            check_same_size((path_a, a.shape), (path_b, b.shape))
            return a, b

        return _cached(self._cache, f"pair/{entry['filename']}", read)

    def __getitem__(self, index: int) -> ChangeSample:
        entry = self.entries[index]
        a, b = self._load_pair(entry)
        captions = self.captions(index)
        transient = None
        if self.augment is not None:
            image_a, image_b, transient = self.augment(a, b, str(entry["filename"]))
        else:
            image_a, image_b = self.normalize(a), self.normalize(b)
        sample = ChangeSample(
            image_a=image_a,
            image_b=image_b,
            image=torch.stack([image_a, image_b]),
            captions=captions,
            name=str(entry["filename"]),
            changed=not all(is_no_change(c) for c in captions),
        )
        if transient is not None:
            sample["transient"] = transient
        return sample


class LevirMCIDataset(LevirCCDataset):
    """LEVIR-MCI: LEVIR-CC pairs plus change masks (D_cd-cc of Sec. III-F).

    ``mask_mode`` maps the label (channel 0: 255 building, 128 road, 0 none):

    * ``"classes"``: 0 none, 1 road, 2 building (:data:`MCI_CLASSES`);
    * ``"change"``: 1 for any change, 0 otherwise;
    * ``"building"``: 1 for building change only (the LEVIR-CD definition), 0 otherwise.

    Label values other than 0, 128 and 255 raise :class:`LevirDataError` naming the file.
    """

    has_mask = True

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        mask_mode: Literal["classes", "change", "building"] = "classes",
        captions_file: str = "LevirCCcaptions.json",
        mean: Sequence[float] = LEVIR_CC_MEAN,
        std: Sequence[float] = LEVIR_CC_STD,
        names: Sequence[str] | None = None,
        cache_images: bool = False,
        augment: PairAugmentFn | None = None,
    ) -> None:
        if mask_mode not in ("classes", "change", "building"):
            raise ValueError(f"mask_mode must be 'classes', 'change' or 'building', got {mask_mode!r}")
        self.mask_mode = mask_mode
        super().__init__(root, split, captions_file=captions_file, mean=mean, std=std, names=names,
                         cache_images=cache_images, augment=augment)

    @property
    def num_classes(self) -> int:
        return len(MCI_CLASSES) if self.mask_mode == "classes" else 2

    def _paths(self, entry: dict) -> list[Path]:
        return [*super()._paths(entry), self._folder(entry) / "label" / entry["filename"]]

    def __getitem__(self, index: int) -> ChangeSample:
        sample = super().__getitem__(index)
        path_a, _, label_path = self._paths(self.entries[index])

        def read() -> np.ndarray:
            label = read_label(label_path)
            check_same_size((path_a, tuple(sample["image_a"].shape[1:])), (label_path, label.shape))
            return _map_mci_label(label, self.mask_mode, label_path)

        mask = _cached(self._cache, f"mask/{self.entries[index]['filename']}", read)
        sample["mask"] = torch.from_numpy(mask.copy()) if self.cache_images else torch.from_numpy(mask)
        return sample


def _map_mci_label(label: np.ndarray, mode: str, path: Path) -> np.ndarray:
    values = np.unique(label)
    if bad := [int(v) for v in values if int(v) not in _MCI_VALUES]:
        raise LevirDataError(f"{path}: label values {bad[:5]} are not LEVIR-MCI classes (0, 128, 255)")
    if mode == "change":
        out = label > 0
    elif mode == "building":
        out = label == 255
    else:
        lut = np.zeros(256, dtype=np.int64)
        for value, cls in _MCI_VALUES.items():
            lut[value] = cls
        return lut[label]
    return out.astype(np.int64)


class LevirCDDataset(Dataset[ChangeSample]):
    """LEVIR-CD: large bi-temporal tiles with building-change masks (D_cd of Sec. III-F).

    ``mode="random"`` (training): each item is a random ``crop_size`` crop of a tile, with random flips
    when ``flip`` is set; ``samples_per_tile`` items per tile and epoch. ``mode="grid"`` (evaluation): the
    crops of a regular grid that covers every tile completely (the last row/column is shifted inward when
    the tile is not a multiple of ``crop_size``), named ``NAME:row:col``. Randomness comes from torch's
    global generator, so ``seed_everything(workers=True)`` makes it reproducible.
    Mask: 1 where the label is non-zero (255 = change), else 0. ``cache_images`` keeps decoded tiles in
    memory (about 9 MB per 1024 px tile), worth it when many crops are drawn from few tiles.
    ``positive_fraction`` (random mode): the share of crops placed around a changed pixel drawn uniformly
    from the tile's changed pixels (the rest are uniform; a tile without change always gets a uniform
    crop), which raises the share of change pixels seen in training where change is sparse.
    ``rotate`` (random mode): a random multiple of 90 degrees after the flips (with them, the eight symmetries of the
    square). ``swap`` (random mode): the two dates exchanged for half of the crops; the binary mask marks a change
    whichever date comes first (a building built reads as one demolished), so it stays a valid label. Both are
    beyond the paper and draw nothing from the random stream when off.
    ``augment`` (training): look-alike change augmentation of each crop after cropping and flipping
    (:class:`semcc.data.augment.PairAugment`; a crop is always a one-off draw, ``transient``).
    """

    has_mask = True
    num_classes = 2

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        crop_size: int | None = 256,
        mode: Literal["random", "grid"] = "grid",
        samples_per_tile: int = 1,
        flip: bool = False,
        mean: Sequence[float] = LEVIR_CC_MEAN,
        std: Sequence[float] = LEVIR_CC_STD,
        cache_images: bool = False,
        positive_fraction: float = 0.0,
        augment: PairAugmentFn | None = None,
        rotate: bool = False,
        swap: bool = False,
    ) -> None:
        if mode not in ("random", "grid"):
            raise ValueError(f"mode must be 'random' or 'grid', got {mode!r}")
        if not 0.0 <= positive_fraction <= 1.0:
            raise ValueError(f"positive_fraction must be in [0, 1], got {positive_fraction}")
        self.positive_fraction = positive_fraction
        self.augment = augment
        self.root = Path(root)
        if not self.root.is_dir():
            raise LevirDataError(f"{self.root}: LEVIR-CD root folder is missing")
        available = [s for s in SPLITS if (self.root / s / "A").is_dir()]
        available += sorted(
            p.name for p in self.root.iterdir() if p.is_dir() and (p / "A").is_dir() and p.name not in SPLITS
        )
        _check_split(split, self.root, available)
        self.split, self.mode, self.crop_size, self.flip = split, mode, crop_size, flip
        self.rotate, self.swap = rotate, swap
        self.samples_per_tile = max(1, int(samples_per_tile))
        folder = self.root / split
        self.tiles = sorted(p.name for p in (folder / "A").glob("*.png"))
        if not self.tiles:
            raise LevirDataError(f"{folder / 'A'}: no PNG tiles")
        for name in self.tiles:
            for sub in ("B", "label"):
                if not (folder / sub / name).is_file():
                    raise LevirDataError(f"{folder / sub / name}: file is missing (tile {name} has an A)")
        self.normalize = Normalizer(mean, std)
        self.cache_images = cache_images
        self._cache: dict[str, Any] | None = {} if cache_images else None
        self._grid: list[tuple[int, int, int, int, int]] = []
        if mode == "grid":
            # Tile size from the first tile's header (cheap); every tile must share it.
            with Image.open(folder / "A" / self.tiles[0]) as im:
                w, h = im.size
            self.tile_size = (h, w)
            crop = crop_size or max(h, w)
            rows, cols = _grid_starts(h, crop), _grid_starts(w, crop)
            self._grid = [
                (t, i, j, r, c)
                for t in range(len(self.tiles))
                for i, r in enumerate(rows)
                for j, c in enumerate(cols)
            ]

    def __len__(self) -> int:
        if self.mode == "grid":
            return len(self._grid)
        return len(self.tiles) * self.samples_per_tile

    def _load(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        def read() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            folder = self.root / self.split
            pa, pb, pl = folder / "A" / name, folder / "B" / name, folder / "label" / name
            a, b, label = read_rgb(pa), read_rgb(pb), read_label(pl)
            check_same_size((pa, a.shape), (pb, b.shape), (pl, label.shape))
            return a, b, label

        return _cached(self._cache, f"tile/{name}", read)  # cached: a tile is read for many crops

    def _changed_pixels(self, name: str, label: np.ndarray) -> np.ndarray:
        """``[K, 2]`` (row, col) of the tile's changed pixels (kept per tile with ``cache_images``)."""
        return _cached(self._cache, f"changed/{name}", lambda: np.argwhere(label > 0))

    def __getitem__(self, index: int) -> ChangeSample:
        if self.mode == "grid":
            tile, row, col, top, left = self._grid[index]
            name = self.tiles[tile]
            a, b, label = self._load(name)
            if a.shape[:2] != self.tile_size:
                raise LevirDataError(
                    f"{self.root / self.split / 'A' / name}: tile size {a.shape[1]}x{a.shape[0]} differs from"
                    " "
                    f"the split's {self.tile_size[1]}x{self.tile_size[0]} (grid mode needs one size)"
                )
            crop = self.crop_size or max(a.shape[:2])
            sample_name = f"{name}:{row}:{col}" if len(self._grid) > len(self.tiles) else name
        else:
            name = self.tiles[index // self.samples_per_tile]
            a, b, label = self._load(name)
            h, w = a.shape[:2]
            crop = min(self.crop_size or max(h, w), h, w)
            top = int(torch.randint(0, h - crop + 1, ()).item())
            left = int(torch.randint(0, w - crop + 1, ()).item())
            if self.positive_fraction > 0 and torch.rand(()) < self.positive_fraction:
                changed = self._changed_pixels(name, label)
                if len(changed):
                    # A crop that holds a random changed pixel, at a random place inside the crop.
                    y, x = changed[int(torch.randint(0, len(changed), ()).item())]
                    top = int(np.clip(y - torch.randint(0, crop, ()).item(), 0, h - crop))
                    left = int(np.clip(x - torch.randint(0, crop, ()).item(), 0, w - crop))
            sample_name = name
        crop_h = min(crop, a.shape[0])
        crop_w = min(crop, a.shape[1])
        sl = (slice(top, top + crop_h), slice(left, left + crop_w))
        a, b, label = a[sl], b[sl], label[sl]
        if self.mode == "random":
            if self.flip:
                if torch.rand(()) < 0.5:
                    a, b, label = a[:, ::-1], b[:, ::-1], label[:, ::-1]
                if torch.rand(()) < 0.5:
                    a, b, label = a[::-1], b[::-1], label[::-1]
            if self.rotate:  # random crops are square
                k = int(torch.randint(0, 4, ()).item())
                a, b, label = np.rot90(a, k), np.rot90(b, k), np.rot90(label, k)
            if self.swap and torch.rand(()) < 0.5:
                a, b = b, a
        transient = None
        if self.augment is not None:
            image_a, image_b, transient = self.augment(a, b, None)
        else:
            image_a, image_b = self.normalize(a), self.normalize(b)
        mask = torch.from_numpy(np.ascontiguousarray(label > 0)).long()
        sample = ChangeSample(
            image_a=image_a,
            image_b=image_b,
            image=torch.stack([image_a, image_b]),
            mask=mask,
            captions=[],
            name=sample_name,
            changed=bool(mask.any()),
        )
        if transient is not None:
            sample["transient"] = transient
        return sample


def _grid_starts(length: int, crop: int) -> list[int]:
    """Start offsets of crops of size ``crop`` that cover ``[0, length)``; the last one ends at ``length``."""
    if crop >= length:
        return [0]
    n = math.ceil(length / crop)
    return [min(i * crop, length - crop) for i in range(n)]
