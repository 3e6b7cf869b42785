"""Summary of :func:`semcc.data.build.build_dataset`: what it wrote and the ``semcc fit`` command that trains on it.

Beyond the paper (issue 14, "2. Their own data sets"): the counts per split the ``semcc dataset`` command prints
(:class:`DatasetSummary`) and the ``semcc fit`` options that train ``configs/tiny.yaml`` on the data set built.
"""

from __future__ import annotations

import shlex
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from semcc.data.build_splits import SPLITS

__all__ = ["CAPTIONS_FILE", "DatasetSummary"]

#: The captions file of the LEVIR-CC layout.
CAPTIONS_FILE = "LevirCCcaptions.json"
#: The input size of ``configs/tiny.yaml``'s model (``encoder.img_size``).
TINY_IMG_SIZE = 256
#: ViT patch size of the shipped presets: a trainable input size is a multiple of it.
PATCH_SIZE = 16


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
        # The masks mark any change, not LEVIR-CD's building change: the consistency report names them so.
        args += ["--data.joint_root", str(out), "--data.cd_root", str(out / "images"),
                 "--data.cd.samples_per_tile", "4", "--model.binary_mask_class", "change"]
        note = ("the three stages of Sec. III-F: CD on the masks (images/ read as LEVIR-CD tiles, 4 flipped crops "
                "per pair and epoch; a mask of any change), captions, then both")
    else:
        args += ["--model.strategy", "caption_only"]
        note = ("no change masks, so no CD phase: strategy caption_only (the encoder, the neck and the caption head "
                "train on the captions)")
    side = next(iter(shapes))[0]
    if side != TINY_IMG_SIZE:
        args += ["--data.cd.crop_size", str(side), "--model.model.init_args.encoder.init_args.img_size", str(side)]
        note += f"; the model built for {side} px pairs (tiny: {TINY_IMG_SIZE})"
    return args, note
