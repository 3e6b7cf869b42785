"""Speed of the look-alike change augmentations (``semcc.data.augment.PairAugment``, beyond the paper: issue 13),
per 256-px image, with the colour map's numpy products on one BLAS thread (as semcc runs them since 0.5.1) and
with numpy's default BLAS threading (as 0.5.0 did).

On a 2-core machine numpy's OpenBLAS threads and torch's OpenMP threads, used in turn by every augmented image
(a numpy matrix product, then torch's add / clamp / scale), spin against each other; semcc therefore limits the
BLAS to the calling thread around the products (``threadpoolctl``). The script times ``PairAugment.apply`` on
``--pairs`` random pairs (the default strengths of ``AugmentConfig``, as ``configs/tiny.yaml`` uses them; the same
draws in both rows), once as shipped and once with the limit replaced by a no-op, and says whether the two give
the same images bit for bit.

Usage (the README's numbers): ``python benchmarks/augment_speed.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import numpy as np
import torch
from threadpoolctl import threadpool_info

import semcc.data.augment as augment
from _common import add_json_argument, report
from semcc.data.options import AugmentConfig


def _time(aug: augment.PairAugment, images: list[np.ndarray], draws: list, repeats: int) -> tuple[float, list]:
    """Seconds per image (best of ``repeats`` passes over every date of every pair) and the last pass's images."""
    best, out = float("inf"), []
    for _ in range(repeats):
        out = []
        start = time.perf_counter()
        for image, (draw_a, draw_b) in zip(images, draws, strict=True):
            out.append(aug.apply(image, draw_a))
            out.append(aug.apply(image, draw_b))
        best = min(best, (time.perf_counter() - start) / (2 * len(images)))
    return best, out


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100, help="random pairs augmented per pass (default 100)")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    parser.add_argument("--repeats", type=int, default=3, help="passes per row; the fastest counts (default 3)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    add_json_argument(parser, "augment_speed.json")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8) for _ in range(args.pairs)]
    aug = augment.PairAugment(AugmentConfig(enabled=True), salt=0)
    draws = [aug.draw(rng) for _ in range(args.pairs)]
    aug.apply(images[0], draws[0][0])  # the noise bank and the BLAS controller, outside the timing

    shipped = augment._one_blas_thread
    rows, results = [], []
    for label, limit in (("1 (semcc 0.5.1)", shipped), ("numpy's default (semcc 0.5.0)", contextlib.nullcontext)):
        augment._one_blas_thread = limit
        try:
            seconds, out = _time(aug, images, draws, args.repeats)
        finally:
            augment._one_blas_thread = shipped
        results.append(out)
        rows.append({"blas": label, "ms": round(seconds * 1e3, 3), "per_s": round(1 / seconds, 1)})
    same = all(torch.equal(a, b) for a, b in zip(*results, strict=True))
    for row in rows:
        row["same"] = "yes" if same else "no"
    blas = [f"{lib['internal_api']} {lib['version']}, {lib['num_threads']} threads by default"
            for lib in threadpool_info() if lib["user_api"] == "blas"]
    report(
        f"augmentation speed: PairAugment.apply, {args.pairs} pairs of {args.size} px, default strengths",
        rows,
        {"blas": "BLAS threads in the colour map", "ms": "ms / image", "per_s": "images / s",
         "same": "same images in both rows"},
        json_path=args.json,
        notes=[f"numpy's BLAS: {'; '.join(blas) or 'none found'}; torch threads: {torch.get_num_threads()}; "
               f"best of {args.repeats} passes"],
    )
    return rows


if __name__ == "__main__":
    main()
