"""``semcc serve --ckpt CKPT``: a local web page that captions a before / after pair and shows its change mask.

The page and its JSON API are :mod:`semcc.serve` (beyond the paper, issue 14, "3. A web page"): upload two images
(or pick a pair of ``--folder DIR``, which holds ``DIR/A/NAME`` and ``DIR/B/NAME``), see the caption (paper Eq. 7),
the change mask (Eq. 6) over the after image and the caption-mask consistency report, download the mask PNG.

The options are checked, and the port bound, before the model is loaded; then the model is loaded once and
uvicorn serves until Ctrl+C. Needs the ``app`` extra (``pip install 'semcc[app]'``: starlette, python-multipart,
uvicorn); without it the command says so in one line.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import sys
from importlib import import_module
from pathlib import Path

from semcc.commands import CommandError

__all__ = ["build_parser", "run"]

_EXTRA = ("starlette", "python_multipart", "uvicorn")


def build_parser() -> argparse.ArgumentParser:
    """The options of ``semcc serve``."""
    p = argparse.ArgumentParser(
        prog="semcc serve",
        description="Serve a local web page (and a JSON API, POST /api/caption) that captions the change between "
        "two uploaded images and shows the change mask over the after image (needs pip install 'semcc[app]').",
    )
    p.add_argument("--ckpt", required=True, type=Path, help="a checkpoint written by `semcc fit`")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free port, printed)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default cpu)")
    p.add_argument("--folder", type=Path, default=None,
                   help="a folder with A/ (before) and B/ (after) images of the same names, offered on the page")
    p.add_argument("--max-upload-mb", type=float, default=50.0,
                   help="largest request accepted, both images together, in MB (default 50)")
    return p


def _check_extra() -> None:
    for module in _EXTRA:
        try:
            import_module(module)
        except ImportError:
            name = module.replace("_", "-")
            raise CommandError(f"{name} is not installed: the web page needs pip install 'semcc[app]'") from None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    """Check the options, bind the port, load the model once, serve until interrupted."""
    _check_extra()
    from semcc.inference import Predictor, check_device
    from semcc.serve import bind_socket, create_app, folder_pairs, run_server

    check_device(args.device)
    if not 0 <= args.port <= 65535:
        raise CommandError(f"--port: must be in 0-65535, got {args.port}")
    if args.max_upload_mb <= 0:
        raise CommandError(f"--max-upload-mb: must be positive, got {args.max_upload_mb}")
    if args.folder is not None:
        folder_pairs(args.folder)  # a missing folder, A/ or B/, or no pair: one line
    if not args.ckpt.is_file():
        raise CommandError(f"{args.ckpt}: " + ("is a folder, not a checkpoint file" if args.ckpt.is_dir()
                                               else "no such checkpoint file (--ckpt)"))
    try:
        sock = bind_socket(args.host, args.port)
    except OSError as err:
        raise CommandError(f"--host {args.host} --port {args.port}: cannot listen there: "
                           f"{err.strerror or err}") from None
    try:
        predictor = Predictor.from_checkpoint(args.ckpt, device=args.device)
        app = create_app(predictor, folder=args.folder, max_upload_mb=args.max_upload_mb, checkpoint=args.ckpt)
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        print(f"semcc serve: http://{shown}:{port}/  (checkpoint {args.ckpt}, {args.device}; Ctrl+C stops)",
              flush=True)
        if not _is_loopback(args.host):
            print(f"semcc serve: listening on {args.host}: anyone who can reach it can use the model "
                  "(there is no login)", file=sys.stderr, flush=True)
        # some uvicorn releases shut down on Ctrl+C, then raise the signal again; others (0.55.0) return
        with contextlib.suppress(KeyboardInterrupt):
            run_server(app, sock)
        print("semcc serve: stopped", flush=True)
    finally:
        sock.close()
    return 0
