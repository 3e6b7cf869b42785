"""A user's images in, mask pictures out: the image-input helpers of inference (pure numpy / PIL / torch).

* :func:`to_rgb` turns one image given in any supported form into ``uint8 [H, W, 3]``: a file path, a PIL
  image, an ``H x W x C`` numpy array (``uint8`` 0-255, ``bool``, or float in [0, 1]) or a ``C x H x W``
  tensor (same value rules, not normalised). Conversions, not errors (the rules of
  :func:`semcc.data.images.read_rgb`): grey (one channel) is repeated to RGB, an alpha channel (RGBA, LA) is
  dropped, palette images are converted to RGB.
* :func:`load_pair` reads a before / after pair and checks that both have the same size.
* :func:`mask_to_png` draws a class-index change mask (paper Eq. 6) as an 8-bit grey PNG image, as
  ``semcc caption``, ``semcc figure`` and ``semcc predict`` write it.

Errors are :class:`InputImageError` (a ``ValueError``) whose message starts with the file (or the label of
an in-memory image, e.g. ``before[0]``): a missing or corrupt file, A and B of different sizes (both named
with their sizes), an array of an unsupported shape or type. Nothing here imports Lightning.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from semcc.data.images import LevirDataError, pil_to_rgb, read_rgb

__all__ = ["ImageInput", "InputImageError", "image_name", "load_pair", "mask_to_png", "to_rgb"]

#: What one image may be: a path, a PIL image, an ``H x W x C`` array or a ``C x H x W`` tensor.
ImageInput = str | os.PathLike | Image.Image | np.ndarray | torch.Tensor


class InputImageError(ValueError):
    """An input image is missing, unreadable, of an unsupported kind, or A and B differ in size.

    The message starts with the file (or ``before[i]`` / ``after[i]`` for an in-memory image).
    """


def _array_to_rgb(array: np.ndarray, label: str, channels_first: bool) -> np.ndarray:
    if channels_first and array.ndim == 3:
        array = np.moveaxis(array, 0, -1)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 2, 3, 4) or min(array.shape[:2]) < 1:
        layout = "C x H x W" if channels_first else "H x W x C"
        raise InputImageError(
            f"{label}: expected an image of shape {layout} with 1, 3 or 4 channels (or H x W), got {array.shape}"
        )
    if array.dtype == np.uint8:
        pass
    elif array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif np.issubdtype(array.dtype, np.floating):
        if array.size and (np.nanmin(array) < 0 or np.nanmax(array) > 1):
            raise InputImageError(
                f"{label}: float images must be RGB in [0, 1] (not normalised), got values in "
                f"[{float(np.nanmin(array)):.3g}, {float(np.nanmax(array)):.3g}]"
            )
        array = np.rint(np.nan_to_num(array) * 255).astype(np.uint8)
    else:
        raise InputImageError(f"{label}: expected uint8 (0-255) or float (0-1) pixels, got {array.dtype}")
    if array.shape[-1] in (2, 4):  # LA / RGBA: drop alpha
        array = array[..., :-1]
    if array.shape[-1] == 1:  # grey: repeat to RGB
        array = np.repeat(array, 3, axis=-1)
    return np.ascontiguousarray(array)


def to_rgb(image: ImageInput, label: str = "image") -> np.ndarray:
    """Any supported image input as ``uint8 [H, W, 3]`` (see the module docstring for the conversions).

    ``label`` names an in-memory image in error messages; a path names itself.
    """
    try:
        if isinstance(image, (str, os.PathLike)):
            return read_rgb(Path(image).expanduser())
        if isinstance(image, Image.Image):
            return pil_to_rgb(image, label)
    except LevirDataError as err:
        raise InputImageError(str(err)) from None
    if isinstance(image, torch.Tensor):
        return _array_to_rgb(image.detach().cpu().numpy(), label, channels_first=True)
    if isinstance(image, np.ndarray):
        return _array_to_rgb(image, label, channels_first=False)
    raise InputImageError(
        f"{label}: expected a file path, a PIL image, a numpy array or a tensor, got {type(image).__name__}"
    )


def _describe(image: ImageInput, label: str) -> str:
    return os.fspath(image) if isinstance(image, (str, os.PathLike)) else label


def load_pair(
    before: ImageInput, after: ImageInput, label_a: str = "before", label_b: str = "after"
) -> tuple[np.ndarray, np.ndarray]:
    """Both images as ``uint8 [H, W, 3]``; :class:`InputImageError` naming both files (or labels) and sizes
    when they differ in size."""
    a, b = to_rgb(before, label_a), to_rgb(after, label_b)
    if a.shape[:2] != b.shape[:2]:
        raise InputImageError(
            f"{_describe(before, label_a)} is {a.shape[1]}x{a.shape[0]} but {_describe(after, label_b)} is "
            f"{b.shape[1]}x{b.shape[0]} (width x height): the before and after images must have the same size"
        )
    return a, b


def image_name(image: ImageInput, index: int) -> str:
    """The name of a pair's result: the file's name for a path, ``pair{index}`` for an in-memory image."""
    return Path(image).name if isinstance(image, (str, os.PathLike)) else f"pair{index}"


def mask_to_png(mask: np.ndarray | torch.Tensor, num_classes: int = 2) -> Image.Image:
    """An 8-bit grey PNG image of a class-index mask: 0 / 255 for binary change, the class index times
    ``255 // (classes - 1)`` for multi-class masks."""
    if isinstance(mask, torch.Tensor):
        mask = mask.cpu().numpy()
    scale = 255 // max(1, num_classes - 1)
    return Image.fromarray((mask.astype(np.int64) * scale).clip(0, 255).astype(np.uint8), "L")
