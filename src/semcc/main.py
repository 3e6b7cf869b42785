"""The ``semcc`` command: LightningCLI's fit / validate / test / predict, plus ``semcc synth``.

``semcc fit --config configs/tiny.yaml`` trains SemanticCC (paper Eq. 1, loss Eq. 9, strategy Sec. III-F)
through :class:`SemanticCCCLI`; ``semcc synth`` writes SynthLEVIR (the LEVIR-CC/MCI/CD layouts the readers
of ``semcc.data.levir`` load) and can draw a preview grid; ``semcc caption`` and ``semcc figure`` apply a
trained checkpoint to a user's pair and draw pictures (:mod:`semcc.inference`, :mod:`semcc.visualize`).
With no ``--config``, ``fit`` uses the embedded default ``configs/tiny.yaml``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["main"]


def _synth_parser() -> argparse.ArgumentParser:
    from semcc.data.synthetic import SynthLEVIRConfig

    d = SynthLEVIRConfig()
    p = argparse.ArgumentParser(
        prog="semcc synth",
        description="Generate SynthLEVIR: bi-temporal scenes with captions and change masks, written in the "
        "real LEVIR-CC / LEVIR-MCI (OUT/LEVIR-CC) and LEVIR-CD (OUT/LEVIR-CD) layouts.",
    )
    p.add_argument("--out", required=True, type=Path, help="output folder")
    for split in ("train", "val", "test"):
        p.add_argument(f"--{split}", type=int, default=d.pairs.get(split, 0), help=f"{split} pairs (LEVIR-CC)")
    for split in ("train", "val", "test"):
        p.add_argument(
            f"--cd-{split}", type=int, default=d.cd_tiles.get(split, 0), help=f"{split} tiles (LEVIR-CD)"
        )
    p.add_argument("--size", type=int, default=d.size, help="pair size in pixels (square)")
    p.add_argument("--cd-scale", type=int, default=d.cd_scale, help="LEVIR-CD tile size = cd-scale * size")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--nuisance", type=float, default=d.nuisance, help="strength of non-change nuisances, 0-1+")
    p.add_argument("--no-change-ratio", type=float, default=d.no_change_ratio)
    p.add_argument("--workers", type=int, default=d.workers, help="processes (0: all cores)")
    p.add_argument("--overwrite", action="store_true", help="regenerate even if OUT holds a complete copy")
    p.add_argument("--preview", type=Path, help="also write a PNG grid of a few pairs, masks and captions")
    p.add_argument("--preview-n", type=int, default=6, help="pairs in the preview")
    return p


def _synth(argv: Sequence[str]) -> int:
    from semcc.data.synthetic import SynthLEVIRConfig, generate_synth_levir, is_generated, write_preview

    args = _synth_parser().parse_args(list(argv))
    config = SynthLEVIRConfig(
        pairs={k: getattr(args, k) for k in ("train", "val", "test") if getattr(args, k) > 0},
        cd_tiles={k: getattr(args, f"cd_{k}") for k in ("train", "val", "test") if getattr(args, f"cd_{k}") > 0},
        size=args.size,
        cd_scale=args.cd_scale,
        seed=args.seed,
        nuisance=args.nuisance,
        no_change_ratio=args.no_change_ratio,
        workers=args.workers,
    )
    start = time.perf_counter()
    if not args.overwrite and is_generated(args.out, config):
        print(f"SynthLEVIR already complete in {args.out} (same arguments); use --overwrite to regenerate")
        summary = json.loads((args.out / "synthlevir.json").read_text())
    else:
        summary = generate_synth_levir(args.out, config, overwrite=True)
    print(json.dumps(summary, indent=2, default=str))
    print(f"done in {time.perf_counter() - start:.1f}s: {args.out}")
    if args.preview:
        split = next(iter(config.pairs), "train")
        path = write_preview(args.out, args.preview, split=split, n=args.preview_n)
        print(f"preview: {path}")
    return 0


def _evaluate(argv: Sequence[str]) -> int:
    from semcc.evaluate import main as evaluate_main

    return evaluate_main(argv)


def _caption(argv: Sequence[str]) -> int:
    from semcc.inference import caption_main

    return caption_main(argv)


def _figure(argv: Sequence[str]) -> int:
    from semcc.visualize import figure_main

    return figure_main(argv)


def _shape_files(argv: Sequence[str]) -> int:
    """``semcc shape-files``: write the files (:func:`semcc.paper_shape.write_paper_shape_checkpoints`) and print
    their paths and sizes."""
    from semcc.paper_shape import MARKER, SHAPES, file_size, is_written, write_paper_shape_checkpoints

    p = argparse.ArgumentParser(
        prog="semcc shape-files",
        description="Write random checkpoint files of the paper's pretrained parts (SAM ViT-L, BLIP-2 Q-Former, "
        "MiniGPT-4 llama_proj, Vicuna-7B + tokenizer) in their real formats, at the paper's widths with few "
        "layers, so that the paper config's loaders can run on a CPU.",
    )
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--vit-depth", type=int, default=2, help="SAM ViT blocks (the last one global)")
    p.add_argument("--qformer-layers", type=int, default=2, help="Q-Former layers")
    p.add_argument("--llm-layers", type=int, default=2, help="Llama layers")
    p.add_argument("--widths", choices=sorted(SHAPES), default="paper", help="paper widths or small test widths")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="rewrite even if OUT holds a complete copy")
    args = p.parse_args(list(argv))
    start = time.perf_counter()
    shape = {"vit_depth": args.vit_depth, "qformer_layers": args.qformer_layers, "llm_layers": args.llm_layers,
             "widths": args.widths, "seed": args.seed}
    if not args.overwrite and is_written(args.out, **shape):
        print(f"already complete in {args.out} (same arguments): nothing written; --overwrite rewrites")
    paths = write_paper_shape_checkpoints(args.out, overwrite=args.overwrite, **shape)
    for part, path in paths.items():
        print(f"{part:<10} {path}  {file_size(path) / 2**20:.1f} MiB")
    print(f"{'summary':<10} {args.out / MARKER}")
    print(f"done in {time.perf_counter() - start:.1f}s")
    return 0


def _lightning(subcommand: str) -> Callable[[Sequence[str]], int]:
    def run(argv: Sequence[str]) -> int:
        from semcc.cli import run_lightning_cli

        run_lightning_cli([subcommand, *argv])
        return 0

    return run


_COMMANDS: dict[str, tuple[Callable[[Sequence[str]], int], str]] = {
    "fit": (_lightning("fit"), "train (default config: configs/tiny.yaml, embedded)"),
    "validate": (_lightning("validate"), "run validation: CD and caption metrics"),
    "test": (_lightning("test"), "run the test split: CD and caption metrics"),
    "predict": (_lightning("predict"), "caption and segment a split (or a folder: --data.predict_root DIR)"),
    "caption": (_caption, "caption your own pair: semcc caption BEFORE AFTER --ckpt CKPT (mask + overlay PNGs)"),
    "figure": (_figure, "draw a Fig. 9-style picture of N pairs of a split with a checkpoint"),
    "synth": (_synth, "generate the SynthLEVIR data set (and a preview picture)"),
    "evaluate": (_evaluate, "score any program's captions.json against LevirCCcaptions.json, with the floors"),
    "shape-files": (
        _shape_files,
        "write random checkpoint files of the paper's parts in their real formats (paper widths, few layers) "
        "to a folder",
    ),
}


def _usage() -> str:
    lines = ["usage: semcc COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<11} {help_}" for name, (_, help_) in _COMMANDS.items()]
    lines += ["", "Run 'semcc COMMAND --help' for a command's options."]
    return "\n".join(lines)


def main(args: Sequence[str] | None = None) -> int:
    """Entry point of the ``semcc`` console script; ``args`` defaults to ``sys.argv[1:]``."""
    argv = list(sys.argv[1:] if args is None else args)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in _COMMANDS:
        print(f"semcc: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    return _COMMANDS[command][0](rest)


if __name__ == "__main__":
    sys.exit(main())
