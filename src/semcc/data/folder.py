"""A plain folder of image pairs to predict on: ``DIR/A/NAME`` (before) and ``DIR/B/NAME`` (after), no labels.

This feeds paper Eq. 1 at inference through ``semcc predict --data.eval_data.predict_root DIR`` (the whole
model: caption and change mask per pair). Every image in ``A`` needs a file of the same name in ``B`` and the
other way round. Images are read with :func:`semcc.data.images.read_rgb` (grey repeated to RGB, alpha
dropped) and resized (bilinear, antialiased) to ``size`` when they are not already that size, since a
Lightning batch feeds the model at its input size; the masks come out at that size. For captions and
full-resolution masks of pairs of any size, use :class:`semcc.inference.Predictor` / ``semcc caption``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from semcc.data.images import LevirDataError, Normalizer, check_same_size, read_rgb
from semcc.data.levir import LEVIR_CC_MEAN, LEVIR_CC_STD, ChangeSample

__all__ = ["IMAGE_SUFFIXES", "PairFolderDataset"]

#: File name endings read as images.
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


class PairFolderDataset(Dataset[ChangeSample]):
    """Pairs ``root/A/NAME`` + ``root/B/NAME`` without captions or masks (``captions=[]``, ``changed=False``).

    Args:
        root: the folder holding ``A/`` and ``B/``.
        size: resize both images to ``size x size`` (the model's input size); ``None`` keeps them as they are.
        mean, std: RGB normalisation on the 0-1 scale (default: LEVIR-CC statistics).

    Raises :class:`~semcc.data.levir.LevirDataError` naming the folder or file: a missing ``A``/``B``
    folder, no images, an image without its partner; on access, an unreadable image or A/B sizes differing.
    """

    has_mask = False

    def __init__(
        self,
        root: str | Path,
        *,
        size: int | None = None,
        mean: Sequence[float] = LEVIR_CC_MEAN,
        std: Sequence[float] = LEVIR_CC_STD,
    ) -> None:
        self.root = Path(root).expanduser()
        self.size = size
        names = {}
        for sub in ("A", "B"):
            folder = self.root / sub
            if not folder.is_dir():
                raise LevirDataError(f"{folder}: folder is missing (expected {self.root}/A and {self.root}/B)")
            names[sub] = {p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()}
        for sub, other in (("A", "B"), ("B", "A")):
            if lonely := sorted(names[sub] - names[other]):
                raise LevirDataError(f"{self.root / other / lonely[0]}: file is missing ({sub}/{lonely[0]} has no "
                                     f"partner; {len(lonely)} unpaired in {sub})")
        self.names = sorted(names["A"])
        if not self.names:
            raise LevirDataError(f"{self.root / 'A'}: no images ({', '.join(IMAGE_SUFFIXES)})")
        self.normalize = Normalizer(mean, std)

    def __len__(self) -> int:
        return len(self.names)

    def _image(self, path: Path) -> tuple[torch.Tensor, tuple[int, ...]]:
        rgb = read_rgb(path)
        x = self.normalize(rgb)
        if self.size is not None and tuple(x.shape[-2:]) != (self.size, self.size):
            x = F.interpolate(x[None], size=(self.size, self.size), mode="bilinear", antialias=True)[0]
        return x, rgb.shape

    def __getitem__(self, index: int) -> ChangeSample:
        name = self.names[index]
        path_a, path_b = self.root / "A" / name, self.root / "B" / name
        (image_a, shape_a), (image_b, shape_b) = self._image(path_a), self._image(path_b)
        check_same_size((path_a, shape_a), (path_b, shape_b))
        return ChangeSample(
            image_a=image_a, image_b=image_b, image=torch.stack([image_a, image_b]), captions=[], name=name,
            changed=False,
        )
