"""SynthLEVIR preview: a PNG grid of a few generated pairs (A | B | LEVIR-MCI label, first caption), the
picture ``semcc synth --preview`` draws.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from semcc.data.text import NO_CHANGE_SENTENCES

__all__ = ["write_preview"]


def write_preview(root: str | Path, out_png: str | Path, *, split: str = "train", n: int = 6) -> Path:
    """Draw ``n`` pairs of a generated split as a grid: A | B | label, first caption under each row.

    Changed and unchanged pairs are both shown when the split has them (about a third unchanged). Each
    picture is shown at ``t = max(size, 128)`` pixels (nearest-neighbour upscaling of small pairs); the PNG
    is ``3 * t + 8`` wide and ``rows * (t + 30)`` high. Label colours: white building change, orange road
    change. Returns the path written.
    """
    root, out_png = Path(root), Path(out_png)
    cc = root / "LEVIR-CC"
    data = json.loads((cc / "LevirCCcaptions.json").read_text(encoding="utf-8"))
    entries = [e for e in data["images"] if e["split"] == split]
    if not entries:
        raise ValueError(f"{cc / 'LevirCCcaptions.json'} has no pairs in split {split!r}")
    no_change = set(NO_CHANGE_SENTENCES)
    unchanged = [e for e in entries if " ".join(e["sentences"][0]["tokens"]) in no_change]
    changed = [e for e in entries if " ".join(e["sentences"][0]["tokens"]) not in no_change]
    k_un = min(len(unchanged), max(1, n // 3)) if n > 1 else 0
    pick = changed[:n - k_un] + unchanged[:k_un]
    pick += [e for e in entries if e not in pick][:n - len(pick)]
    pick.sort(key=lambda e: e["imgid"])
    size = Image.open(cc / "images" / split / "A" / pick[0]["filename"]).size[0]
    t, gap, strip = max(size, 128), 4, 30
    grid = Image.new("RGB", (3 * t + 2 * gap, len(pick) * (t + strip)), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default()
    colours = np.zeros((256, 3), np.uint8)
    colours[255], colours[128] = (255, 255, 255), (255, 160, 0)
    for row, e in enumerate(pick):
        folder = cc / "images" / split
        label = np.asarray(Image.open(folder / "label" / e["filename"]))
        label = label[..., 0] if label.ndim == 3 else label
        tiles = [Image.open(folder / sub / e["filename"]).convert("RGB") for sub in ("A", "B")]
        tiles.append(Image.fromarray(colours[label]))
        y = row * (t + strip)
        for col, tile in enumerate(tiles):
            grid.paste(tile.resize((t, t), Image.Resampling.NEAREST), (col * (t + gap), y))
        words, lines = e["sentences"][0]["tokens"], [""]
        for w in words:
            trial = f"{lines[-1]} {w}".strip()
            if draw.textlength(trial, font=font) > grid.width - 6 and lines[-1]:
                lines.append(w)
            else:
                lines[-1] = trial
        draw.multiline_text((3, y + t + 2), "\n".join(lines[:2]), fill=(0, 0, 0), font=font, spacing=2)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out_png)
    return out_png
