"""Pictures of Semantic-CC predictions (paper Eq. 1 applied at inference: caption T of Eq. 7, mask M of Eq. 6).

* :func:`overlay_figure`: before | after | the change mask drawn over *after* in a colour with alpha, the
  caption underneath (wrapped), as ``semcc caption`` writes it.
* :func:`mask_overlay`: the change mask drawn over *after* alone, at the image's size (the picture of
  ``semcc serve``'s page, :mod:`semcc.serve`).
* :func:`results_figure`: the paper's Fig. 9 layout for N pairs of a split: rows of before, after, ground-
  truth mask (a blank "no GT mask" panel when there is none), predicted mask, with the ground-truth and
  predicted captions under each row. ``semcc figure`` (:mod:`semcc.commands.figure`) draws it from a
  checkpoint and a LEVIR-CC / LEVIR-MCI folder.

Text uses PIL's default font. Images are anything :func:`semcc.data.inputs.to_rgb` reads (paths, PIL images,
``uint8`` arrays, tensors). Pictures only: no model and no Lightning are imported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from semcc.data.inputs import ImageInput, mask_to_png, to_rgb

__all__ = ["MASK_COLORS", "FigureSample", "mask_overlay", "overlay_figure", "results_figure"]

#: Overlay colour of mask class 1, 2, ... (class 0, "no change", is not drawn).
MASK_COLORS: tuple[tuple[int, int, int], ...] = (
    (255, 40, 40), (40, 150, 255), (255, 200, 0), (60, 220, 90), (220, 80, 255), (0, 220, 220),
)
_BACKGROUND = (255, 255, 255)
_TEXT = (0, 0, 0)
_GAP = 4


def _font(size: int = 14) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # older Pillow or no FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _wrap(text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: int) -> list[str]:
    """Greedy word wrap of ``text`` to lines at most ``width`` px wide (a longer word gets a line of its own)."""
    lines: list[str] = []
    for paragraph in str(text).splitlines() or [""]:
        line = ""
        for word in paragraph.split():
            candidate = f"{line} {word}" if line else word
            if line and font.getlength(candidate) > width:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
    return lines


def _line_height(font: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> int:
    _, top, _, bottom = font.getbbox("Ag|")
    return int(bottom - top) + 4


def _fit(image: Image.Image, size: tuple[int, int], mask: bool = False) -> Image.Image:
    if image.size == size:
        return image
    return image.resize(size, Image.Resampling.NEAREST if mask else Image.Resampling.BILINEAR)


def _mask_resized(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``mask`` ``[h, w]`` resized (nearest) to ``size`` = ``(width, height)``."""
    if (mask.shape[1], mask.shape[0]) == size:
        return mask
    return np.array(Image.fromarray(mask.astype(np.uint8), "L").resize(size, Image.Resampling.NEAREST))


def _overlay(after: np.ndarray, mask: np.ndarray | None, alpha: float) -> np.ndarray:
    if mask is None:
        return after
    out = after.astype(np.float32)
    mask = _mask_resized(np.asarray(mask), (after.shape[1], after.shape[0]))
    for cls in [int(c) for c in np.unique(mask) if c > 0]:
        color = np.array(MASK_COLORS[(cls - 1) % len(MASK_COLORS)], dtype=np.float32)
        sel = mask == cls
        out[sel] = (1 - alpha) * out[sel] + alpha * color
    return out.round().clip(0, 255).astype(np.uint8)


def mask_overlay(after: ImageInput, mask: np.ndarray | None, *, alpha: float = 0.45) -> Image.Image:
    """*after* with the class mask drawn over it, at *after*'s size: class c > 0 in ``MASK_COLORS[c - 1]`` with
    opacity ``alpha`` (``mask`` of any size is resized nearest; ``None`` gives *after* plain)."""
    return Image.fromarray(_overlay(to_rgb(after, "after"), mask, alpha))


def _text_block(draw: ImageDraw.ImageDraw, xy: tuple[int, int], lines: Sequence[str], font, height: int) -> None:
    x, y = xy
    for line in lines:
        draw.text((x, y), line, fill=_TEXT, font=font)
        y += height


def overlay_figure(
    before: ImageInput,
    after: ImageInput,
    mask: np.ndarray | None,
    caption: str,
    *,
    alpha: float = 0.45,
    max_panel: int = 1024,
    font_size: int = 14,
) -> Image.Image:
    """``before | after | mask over after``, with ``caption`` wrapped underneath.

    ``mask``: class indices ``[H, W]`` (any size; resized nearest to the image), class c > 0 drawn in
    ``MASK_COLORS[c - 1]`` with opacity ``alpha``; ``None`` draws *after* plain. Panels larger than
    ``max_panel`` px are scaled down (aspect kept).
    """
    a, b = to_rgb(before, "before"), to_rgb(after, "after")
    over = _overlay(b, mask, alpha)
    h, w = b.shape[:2]
    scale = min(1.0, max_panel / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    panels = [_fit(Image.fromarray(x), size) for x in (a, b, over)]
    font = _font(font_size)
    line_h = _line_height(font)
    width = 3 * size[0] + 4 * _GAP
    titles = ("before", "after", "change mask over after")
    lines = _wrap(caption, font, width - 2 * _GAP)
    top = line_h + _GAP
    height = top + size[1] + _GAP + line_h * len(lines) + 2 * _GAP
    canvas = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for k, (panel, title) in enumerate(zip(panels, titles, strict=True)):
        x = _GAP + k * (size[0] + _GAP)
        draw.text((x, _GAP // 2), title, fill=_TEXT, font=font)
        canvas.paste(panel, (x, top))
    _text_block(draw, (_GAP, top + size[1] + _GAP), lines, font, line_h)
    return canvas


@dataclass
class FigureSample:
    """One row of :func:`results_figure`.

    Attributes:
        before, after: the images (anything :func:`semcc.data.inputs.to_rgb` reads).
        pred_mask: predicted class indices ``[H, W]``, drawn as 0 / 255 (binary) or class x 255 / (K - 1).
        pred_caption: the predicted caption.
        gt_mask: the ground-truth label ``uint8 [H, W]``, drawn as its grey values as given (a LEVIR-MCI
            label: 255 building, 128 road); ``None``: a blank panel reading "no GT mask".
        gt_caption: a reference caption (``None``: not shown).
        name: the pair's name, printed before its captions.
    """

    before: ImageInput
    after: ImageInput
    pred_mask: np.ndarray | None
    pred_caption: str | None
    gt_mask: np.ndarray | None = None
    gt_caption: str | None = None
    name: str = ""


def _blank(size: tuple[int, int], text: str, font) -> Image.Image:
    panel = Image.new("RGB", size, (200, 200, 200))
    draw = ImageDraw.Draw(panel)
    tw = font.getlength(text)
    draw.text(((size[0] - tw) / 2, size[1] / 2 - _line_height(font) / 2), text, fill=(60, 60, 60), font=font)
    return panel


def results_figure(
    samples: Sequence[FigureSample], *, panel_size: int = 256, num_classes: int = 2, font_size: int = 14
) -> Image.Image:
    """A Fig. 9-style grid: per sample a row of before, after, GT mask, predicted mask (``panel_size`` px
    squares) and, underneath, ``GT: ...`` and ``Pred: ...`` captions wrapped to the figure's width."""
    if not samples:
        raise ValueError("results_figure needs at least one sample")
    font = _font(font_size)
    line_h = _line_height(font)
    size = (panel_size, panel_size)
    width = 4 * panel_size + 5 * _GAP
    rows: list[tuple[list[Image.Image], list[str]]] = []
    for i, s in enumerate(samples):
        a = Image.fromarray(to_rgb(s.before, f"samples[{i}].before"))
        b = Image.fromarray(to_rgb(s.after, f"samples[{i}].after"))
        gt = (
            _fit(Image.fromarray(np.asarray(s.gt_mask).astype(np.uint8), "L"), size, mask=True).convert("RGB")
            if s.gt_mask is not None
            else _blank(size, "no GT mask", font)
        )
        if s.pred_mask is not None:
            pred = _fit(mask_to_png(np.asarray(s.pred_mask), num_classes), size, mask=True).convert("RGB")
        else:
            pred = _blank(size, "no CD head", font)
        text: list[str] = []
        prefix = f"{s.name}  " if s.name else ""
        if s.gt_caption is not None:
            text += _wrap(f"{prefix}GT: {s.gt_caption}", font, width - 2 * _GAP)
            prefix = ""
        text += _wrap(f"{prefix}Pred: {s.pred_caption if s.pred_caption is not None else '-'}", font,
                      width - 2 * _GAP)
        rows.append(([_fit(a, size), _fit(b, size), gt, pred], text))
    header = line_h + _GAP
    height = header + sum(panel_size + _GAP + line_h * len(text) + 2 * _GAP for _, text in rows)
    canvas = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for k, title in enumerate(("before", "after", "GT mask", "predicted mask")):
        draw.text((_GAP + k * (panel_size + _GAP), _GAP // 2), title, fill=_TEXT, font=font)
    y = header
    for panels, text in rows:
        for k, panel in enumerate(panels):
            canvas.paste(panel, (_GAP + k * (panel_size + _GAP), y))
        y += panel_size + _GAP
        _text_block(draw, (_GAP, y), text, font, line_h)
        y += line_h * len(text) + 2 * _GAP
    return canvas
