"""Look-alike (non-)change augmentations of training pairs: what makes two dates of one place differ although
nothing there changed.

Beyond the paper (issue 13, "3. Robustness to look-alike changes"): Semantic-CC trains on LEVIR-CD / LEVIR-CC as
they are, and a model trained so may call a darker, hazier, browner or slightly shifted second image a change.
Each nuisance below is drawn **independently for the two dates** (image A and image B get their own random draw)
and applied to the ``uint8 [H, W, 3]`` images, on the 0-1 scale, before normalisation; change labels (masks) and
captions are never touched, so the model learns that these differences are not changes:

* ``illumination``: brightness gain and contrast (about the image's mean grey), each ``1 + U(-s, s)``;
* ``colour``: sensor / radiometric shift, a gain ``1 + U(-s, s)`` and an offset ``U(-s, s)`` per channel;
* ``season``: a blend of weight ``U(0, s)`` toward a season's colour matrix (the pixel's grey times a dry
  yellow-brown tone or a green tone, either with probability 1/2, :data:`SEASON_TONES`);
* ``haze``: a blend of weight ``U(0, s)`` toward a bright grey (``U(0.7, 0.9)``), which also lowers the contrast;
* ``shift``: misregistration: ONE date of the pair (A or B, at random) is shifted by ``(dy, dx)`` whole pixels,
  each in ``[-s, s]`` and not both 0, edges replicated; the label stays (the dates are simply not aligned);
* ``noise``: Gaussian sensor noise of standard deviation ``U(0, s)``.

Each nuisance is applied to each date with probability ``p`` (``shift``: to the pair), and a strength of 0 turns
it off. The four colour nuisances compose into one affine colour map (a 3 x 3 matrix and an offset), applied in
one pass together with the normalisation, so an augmented image costs about what normalising it costs.
Noise is cut from a fixed bank of normal numbers (one per process, 16 MiB) at a random offset.
The colour map is a numpy matrix product; it runs on one BLAS thread (:func:`_one_blas_thread`): on a 2-core
machine numpy's OpenBLAS threads and torch's OpenMP threads, spinning in turn, made an image cost 10 ms
instead of 0.65 ms (``benchmarks/augment_speed.py``), and one thread computes the same numbers.

Randomness: :meth:`PairAugment.draw` is a function of the ``numpy`` generator it is given, and it always takes
the same numbers from it whichever nuisances are on, so switching one nuisance off leaves the draws of the others
as they were. :meth:`PairAugment.__call__` seeds that generator per sample from torch's global generator (as
:class:`~semcc.data.levir.LevirCDDataset` draws its crops), so ``seed_everything(workers=True)`` makes a run
reproducible; with ``views`` it seeds it from the pair's name and a view index instead (a fixed set of augmented
versions per pair, see :class:`~semcc.data.options.AugmentConfig`). The options are
:class:`~semcc.data.options.AugmentConfig`, ``data.augment`` of the data module, which applies them to the
training splits only.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from threadpoolctl import ThreadpoolController

from semcc.data.images import Normalizer
from semcc.data.levir import LEVIR_CC_MEAN, LEVIR_CC_STD
from semcc.data.options import AugmentConfig

__all__ = ["NUISANCES", "SEASON_TONES", "DateDraw", "PairAugment", "shift_image"]

#: The nuisances (the fields of :class:`~semcc.data.options.AugmentConfig` that set their strengths).
NUISANCES: tuple[str, ...] = ("illumination", "colour", "season", "haze", "shift", "noise")

#: Luminance weights (ITU-R BT.601): the grey that contrast turns about and that a season tone multiplies.
_LUMA = np.array([0.299, 0.587, 0.114])
#: Season tones, RGB factors on a pixel's grey (scaled to keep its luminance): dry yellow-brown, green.
SEASON_TONES: dict[str, tuple[float, float, float]] = {"dry": (1.25, 1.0, 0.55), "green": (0.80, 1.10, 0.75)}

_BANK_SIZE = 1 << 22  # standard normals of the noise bank (16 MiB of float32)
_bank: torch.Tensor | None = None
_blas: ThreadpoolController | None = None


@contextlib.contextmanager
def _one_blas_thread() -> Iterator[None]:
    """numpy's BLAS limited to the calling thread inside the block (the per-process controller is made once)."""
    global _blas
    if _blas is None:
        _blas = ThreadpoolController()
    with _blas.limit(limits=1, user_api="blas"):
        yield


def _noise_bank() -> torch.Tensor:
    """The per-process bank of standard normal numbers (the same in every process: a fixed seed)."""
    global _bank
    if _bank is None:
        _bank = torch.randn(_BANK_SIZE, generator=torch.Generator().manual_seed(0x5E3CC))
    return _bank


@dataclass(frozen=True)
class DateDraw:
    """The nuisances drawn for one date; the default of each field leaves the image as it is.

    Attributes:
        gain: brightness factor (illumination).
        contrast: contrast factor about the image's mean grey (illumination).
        channel_gain, channel_offset: per-channel gain and offset on the 0-1 scale (colour).
        season: blend weight toward the season tone: > 0 dry (yellow-brown), < 0 green.
        haze: blend weight toward the grey ``haze_level`` (0-1 scale).
        shift: ``(dy, dx)``, the whole pixels the image content moves by (misregistration; edges replicated).
        noise: standard deviation of the Gaussian noise on the 0-1 scale; ``noise_seed`` picks it.
    """

    gain: float = 1.0
    contrast: float = 1.0
    channel_gain: tuple[float, float, float] = (1.0, 1.0, 1.0)
    channel_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    season: float = 0.0
    haze: float = 0.0
    haze_level: float = 0.8
    shift: tuple[int, int] = (0, 0)
    noise: float = 0.0
    noise_seed: int = 0

    @property
    def colour_map(self) -> bool:
        """Whether a colour nuisance (illumination, colour, season, haze) is applied."""
        return (self.gain, self.contrast, self.channel_gain, self.channel_offset, self.season, self.haze) != (
            1.0, 1.0, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), 0.0, 0.0)

    @property
    def identity(self) -> bool:
        """Whether the draw leaves the image unchanged."""
        return not self.colour_map and self.shift == (0, 0) and self.noise == 0.0

    def affine(self, mean_rgb: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        """The colour nuisances as one map ``x -> M x + b`` on the 0-1 scale (``mean_rgb``: the image's mean
        colour, 0-1, about whose grey contrast turns), in the order illumination, colour, season, haze."""
        grey = float(_LUMA @ np.asarray(mean_rgb, dtype=np.float64))
        g, c = self.gain, self.contrast
        m, b = g * c * np.eye(3), np.full(3, g * (1.0 - c) * grey)
        gains = np.asarray(self.channel_gain, dtype=np.float64)
        m, b = gains[:, None] * m, gains * b + np.asarray(self.channel_offset, dtype=np.float64)
        if self.season:
            tone = np.asarray(SEASON_TONES["dry" if self.season > 0 else "green"])
            s, w = np.outer(tone / (_LUMA @ tone), _LUMA), abs(self.season)
            m, b = (1 - w) * m + w * (s @ m), (1 - w) * b + w * (s @ b)
        if self.haze:
            m, b = (1 - self.haze) * m, (1 - self.haze) * b + self.haze * self.haze_level
        return m, b


def shift_image(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``image`` (``[H, W, ...]``) with its content moved by ``dy`` rows and ``dx`` columns, edges replicated:
    ``out[y, x] = image[clip(y - dy), clip(x - dx)]`` (the input itself when both are 0)."""
    if dy == 0 and dx == 0:
        return image
    h, w = image.shape[:2]
    py, px = abs(dy), abs(dx)
    padded = np.pad(image, ((py, py), (px, px)) + ((0, 0),) * (image.ndim - 2), mode="edge")
    return np.ascontiguousarray(padded[py - dy:py - dy + h, px - dx:px - dx + w])


class PairAugment:
    """The nuisances of ``config`` (:class:`~semcc.data.options.AugmentConfig`) for training pairs, each date drawn
    on its own; the result is normalised with ``mean`` / ``std`` (0-1 scale) like the readers' images.

    ``augment(a, b, key)`` -> ``(image_a, image_b, transient)``: the normalised ``float32 [3, H, W]`` tensors of
    the ``uint8 [H, W, 3]`` pair (never modified: it may be a cached array) and whether the draw was a one-off
    (``True``) or one of the pair's fixed ``views`` (``config.views`` and a ``key``, the pair's name, given).
    ``salt`` seeds the views (default: drawn from torch's global generator, so ``seed_everything`` fixes it).
    """

    def __init__(
        self,
        config: AugmentConfig,
        mean: Sequence[float] = LEVIR_CC_MEAN,
        std: Sequence[float] = LEVIR_CC_STD,
        *,
        salt: int | None = None,
    ) -> None:
        self.config = config
        self.normalize = Normalizer(mean, std)
        self._scale = 1.0 / self.normalize.std  # [3, 1, 1]: (x - mean) / std as x * scale + shift
        self._shift = -self.normalize.mean / self.normalize.std
        self.salt = int(torch.randint(0, 2**31 - 1, ()).item()) if salt is None else int(salt)

    def _date(self, rng: np.random.Generator) -> DateDraw:
        """One date's nuisances (always 16 numbers from ``rng``)."""
        c = self.config
        fire = rng.random(5) < c.p  # illumination, colour, season, haze, noise
        ill, cg, co = rng.uniform(-1, 1, 2), rng.uniform(-1, 1, 3), rng.uniform(-1, 1, 3)
        season, dry, haze, level, noise = rng.random(5)
        noise_seed = int(rng.integers(0, 2**62))
        kw: dict = {}
        if fire[0] and c.illumination > 0:
            kw.update(gain=1.0 + c.illumination * float(ill[0]), contrast=1.0 + c.illumination * float(ill[1]))
        if fire[1] and c.colour > 0:
            kw.update(channel_gain=tuple(1.0 + c.colour * float(v) for v in cg),
                      channel_offset=tuple(c.colour * float(v) for v in co))
        if fire[2] and c.season > 0:
            kw["season"] = c.season * float(season) * (1.0 if dry < 0.5 else -1.0)
        if fire[3] and c.haze > 0:
            kw.update(haze=c.haze * float(haze), haze_level=0.7 + 0.2 * float(level))
        if fire[4] and c.noise > 0:
            kw.update(noise=c.noise * float(noise), noise_seed=noise_seed)
        return DateDraw(**kw)

    def draw(self, rng: np.random.Generator) -> tuple[DateDraw, DateDraw]:
        """The draws of date A and date B (independent), the misregistration on one of them."""
        c = self.config
        first, second = self._date(rng), self._date(rng)
        fire, which = rng.random() < c.p, int(rng.integers(0, 2))
        side = 2 * c.shift + 1
        pick = int(rng.integers(0, side * side - 1)) if c.shift > 0 else 0
        if fire and c.shift > 0:
            pick += pick >= (side * side) // 2  # skip the centre: (0, 0) is no shift
            offset = (pick // side - c.shift, pick % side - c.shift)
            if which == 0:
                first = replace(first, shift=offset)
            else:
                second = replace(second, shift=offset)
        return first, second

    def apply(self, image: np.ndarray, draw: DateDraw) -> torch.Tensor:
        """``image`` (``uint8 [H, W, 3]``) under ``draw`` (shift, colour map, noise, clipped to the 0-1 range),
        normalised: ``float32 [3, H, W]``."""
        if draw.identity:
            return self.normalize(image)
        image = shift_image(image, *draw.shift)
        if not draw.colour_map and draw.noise == 0.0:
            return self.normalize(image)
        h, w = image.shape[:2]
        x = np.ascontiguousarray(image).reshape(-1, 3).astype(np.float32)  # [H W, 3] on the 0-255 scale
        if draw.colour_map:
            mean = np.zeros(3)
            with _one_blas_thread():
                if draw.contrast != 1.0:  # a matrix-vector product: far faster than numpy's mean over axis 0
                    mean = (x.T @ np.ones(len(x), np.float32)).astype(np.float64) / (255.0 * len(x))
                m, b = draw.affine(mean)
                y = (m / 255.0).astype(np.float32) @ x.T  # [3, H W] (numpy's matmul: 3x faster than torch's)
            y += b.astype(np.float32)[:, None]
        else:
            y = np.ascontiguousarray(x.T)
            y *= np.float32(1.0 / 255.0)
        out = torch.from_numpy(y)
        if draw.noise:
            n = out.numel()
            bank = _noise_bank()
            if n <= bank.numel() // 2:
                start = draw.noise_seed % (bank.numel() - n + 1)
                noise = bank[start:start + n].view(3, -1)
            else:  # an image larger than half the bank: fresh numbers
                noise = torch.randn(out.shape, generator=torch.Generator().manual_seed(draw.noise_seed))
            out.add_(noise, alpha=draw.noise)
        out.clamp_(0.0, 1.0)
        return out.view(3, h, w).mul_(self._scale).add_(self._shift)

    def __call__(self, a: np.ndarray, b: np.ndarray, key: str | None = None) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """The augmented, normalised pair and whether its draw is a one-off (see the class docstring)."""
        if self.config.views > 0 and key is not None:
            view = int(torch.randint(0, self.config.views, ()).item())
            rng = np.random.default_rng([self.salt, view, zlib.crc32(key.encode("utf-8"))])
            transient = False
        else:
            rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
            transient = True
        draw_a, draw_b = self.draw(rng)
        return self.apply(a, draw_a), self.apply(b, draw_b), transient
