"""The inter-task gates of the neck (paper Eq. 5), measured: how far ``sigmoid(S)`` is open, per unit and direction.

Eq. 5 brings task 2 into task 1 through ``Delta X_2 = X_2 * sigmoid(S)``, with ``S_n = x_{1,n}^T W x_{2,n}`` one
value per pixel (:class:`semcc.models.neck.InterTaskAttention`). A gate near 0 passes nothing of the other task;
one near 0 or 1 also passes almost no gradient to ``S``, and one near 0 none to ``X_2`` either. For each model
(``--ckpt``, a ``semcc fit`` checkpoint, any number of them; ``--random``, the tiny preset at random init) this
script runs the encoder and the neck on the first ``--pairs`` pairs of a split, as in validation, and prints per unit
and direction (``CD -> CC``: the gate into the caption stream, ``inter_cc``; ``CC -> CD``: into the CD stream,
``inter_cd``) the 1st, 50th and 99th percentiles of ``S`` over every pixel of both dates, and the shares of pixels
whose gate is shut (``sigmoid(S) < 1e-6``) or fully open (``> 1 - 1e-6``).

Usage: ``python benchmarks/neck_gates.py --ckpt CKPT [--ckpt CKPT2 ...] [--random] [--split val] [--pairs 32]``
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from _common import add_json_argument, report

COLUMNS = {
    "model": "model",
    "unit": "unit",
    "gate": "gate",
    "s_p01": "S 1%",
    "s_p50": "S 50%",
    "s_p99": "S 99%",
    "shut": "shut (< 1e-6)",
    "open": "open (> 1 - 1e-6)",
}
DIRECTIONS = {"inter_cc": "CD -> CC", "inter_cd": "CC -> CD"}


def gate_rows(model: torch.nn.Module, images: list[tuple[torch.Tensor, torch.Tensor]], label: str,
              batch_size: int = 8) -> list[dict[str, Any]]:
    """One row per neck unit and direction: percentiles of ``S`` and the shares of shut and open gates."""
    neck = getattr(model, "neck", None)
    if neck is None or neck.inter != "bilinear":
        raise ValueError(f"{label}: the model has no neck with Eq. 5's bilinear gate (neck=None or inter='cross')")
    found: dict[tuple[int, str], list[torch.Tensor]] = {}
    handles = []
    for u, unit in enumerate(neck.units):
        for attr in DIRECTIONS:
            gate = getattr(unit, attr)

            def hook(m: torch.nn.Module, inputs: tuple, output: Any, key: tuple[int, str] = (u, attr)) -> None:
                found.setdefault(key, []).append(m.similarity(*inputs).flatten())

            handles.append(gate.register_forward_hook(hook))
    try:
        with torch.no_grad():
            for i in range(0, len(images), batch_size):
                chunk = images[i:i + batch_size]
                f = model.encoder(torch.stack([a for a, _ in chunk]), torch.stack([b for _, b in chunk]))
                neck((f.cd_1, f.cd_2), (f.cc_1, f.cc_2))
    finally:
        for h in handles:
            h.remove()
    rows = []
    for (u, attr), parts in sorted(found.items()):
        s = torch.cat(parts)
        q = torch.quantile(s, torch.tensor([0.01, 0.5, 0.99], dtype=s.dtype)).tolist()
        g = torch.sigmoid(s)
        rows.append({"model": label, "unit": u, "gate": DIRECTIONS[attr], "s_p01": round(q[0], 2),
                     "s_p50": round(q[1], 2), "s_p99": round(q[2], 2),
                     "shut": round(float((g < 1e-6).float().mean()), 4),
                     "open": round(float((g > 1 - 1e-6).float().mean()), 4)})
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    from semcc.data.levir import LevirCCDataset
    from semcc.models import build_semantic_cc
    from semcc.tasks.loading import load_task

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, action="append", default=[], help="a semcc fit checkpoint (repeatable)")
    parser.add_argument("--random", action="store_true", help="also the tiny preset at random init (seed 0)")
    parser.add_argument("--root", type=Path, default=Path("~/.cache/semcc/synthlevir-tiny/LEVIR-CC"),
                        help="LEVIR-CC folder (default: the tiny config's SynthLEVIR)")
    parser.add_argument("--split", default="val")
    parser.add_argument("--pairs", type=int, default=32)
    add_json_argument(parser, "neck_gates.json")
    args = parser.parse_args(argv)
    if not args.ckpt and not args.random:
        parser.error("give --ckpt CKPT and/or --random")
    root = args.root.expanduser()
    if not (root / "LevirCCcaptions.json").is_file():
        parser.error(f"{root}: no LevirCCcaptions.json (run `semcc fit --config configs/tiny.yaml` or `semcc synth`)")
    data = LevirCCDataset(root, args.split)
    images = [(data[i]["image_a"], data[i]["image_b"]) for i in range(min(args.pairs, len(data)))]
    rows: list[dict] = []
    if args.random:
        torch.manual_seed(0)
        model = build_semantic_cc("tiny", img_size=images[0][0].shape[-1], cc_head=False).eval()
        rows += gate_rows(model, images, "random init")
    for ckpt in args.ckpt:
        rows += gate_rows(load_task(ckpt).model, images, ckpt.name if len(args.ckpt) == 1 else str(ckpt))
    report(f"Eq. 5 gates of the neck, {len(images)} {args.split} pairs of {root}", rows, COLUMNS,
           json_path=args.json)
    return rows


if __name__ == "__main__":
    main()
