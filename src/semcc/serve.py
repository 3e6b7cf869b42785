"""A web page for one checkpoint: upload (or pick) a before / after pair, see the caption, the change mask over the
after image and the caption-mask consistency report, download the mask (``semcc serve``; beyond the paper, issue 14,
"3. A web page").

:func:`create_app` wraps a loaded :class:`semcc.inference.Predictor` (paper Eq. 1 at inference: the caption of
Eq. 7, the mask of Eq. 6) in a small ASGI application:

* ``GET /``: one static HTML page (``serve.html`` beside this module: a form, a few dozen lines of JavaScript, no
  outside resources, so it works offline). It posts to the same API that scripts use.
* ``POST /api/caption``: a ``multipart/form-data`` request with the files ``before`` and ``after``, or the field
  ``pair`` naming a pair of the server's ``--folder``. The answer is JSON: ``name``, ``size``, ``caption``, the
  consistency report of :class:`semcc.inference.PairPrediction` (``claim``, ``mask`` = the mask's summary,
  ``disagreements``, ``consistent``, ``checks``), ``mask_png`` (the mask as :func:`semcc.data.inputs.mask_to_png`
  writes it, base64) and ``overlay_png`` (the mask over the after image, :func:`semcc.visualize.mask_overlay`,
  base64). ``curl -F before=@a.png -F after=@b.png http://127.0.0.1:8000/api/caption``.
* ``GET /api/pairs``: the pair names of ``--folder`` (files of the same name in ``A/`` and ``B/``);
  ``GET /api/info``: checkpoint, device, input size, mask classes, the upload limit.

Errors in what a user sent are JSON ``{"error": MESSAGE, "field": ...}`` with a 4xx status, and the page shows the
message: 400 a missing upload or field, 404 an unknown pair, 411 no ``Content-Length``, 413 a request over the
upload limit, 422 an image that cannot be read or a pair of different sizes (the
:class:`~semcc.data.inputs.InputImageError` text, naming the upload: ``after (notes.txt): ...``). Anything else is a
bug: its traceback goes to the server's log and the answer is a one-line JSON 500, never a stack trace on the page.

The model is loaded once, before the server starts (:mod:`semcc.commands.serve`). Decoding the uploads, the model's
forward and the PNG encoding are CPU-bound: they run in Starlette's thread pool, so the event loop keeps serving,
and one lock lets a single prediction use the model at a time (the Predictor is not made for concurrent calls; the
torch kernels already use the cores).

Why Starlette and uvicorn, and not Gradio or FastAPI: Gradio, the ecosystem's habit for model demos, installs
some hundred megabytes (its own FastAPI stack, pandas, a large prebuilt front end, ...), changes its component API
between major versions and reaches out to the network by default (analytics, share links), which a local,
offline tool does not want. FastAPI adds request validation and an OpenAPI schema through pydantic, which three
endpoints that take two files do not need; it is built on Starlette, which gives the routing, the multipart
parsing (python-multipart), the thread pool and the test client. uvicorn serves it. Together they are a few pure
Python packages (``pip install 'semcc[app]'``), and the page is one HTML file with a little JavaScript.

Starlette is imported with this module; :mod:`semcc.commands.serve` checks for it first and names the extra.
"""

from __future__ import annotations

import base64
import io
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from semcc.data.images import LevirDataError
from semcc.data.inputs import InputImageError, load_pair, mask_to_png, to_rgb
from semcc.inference import Predictor
from semcc.visualize import mask_overlay

try:
    import python_multipart  # noqa: F401  (Starlette's form parser, which it imports on first use)
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.datastructures import UploadFile
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Route
except ImportError as err:  # pragma: no cover - the command checks first
    raise ImportError(f"the web page needs starlette and python-multipart: pip install 'semcc[app]' ({err})") from err

__all__ = ["DEFAULT_MAX_UPLOAD_MB", "IMAGE_SUFFIXES", "RequestError", "bind_socket", "create_app", "folder_pairs",
           "run_server"]

#: The default limit of one request (both images together), in megabytes.
DEFAULT_MAX_UPLOAD_MB = 50
#: File suffixes listed as pairs of a ``--folder``.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"})
_PAGE = "serve.html"


class RequestError(Exception):
    """A request the server refuses: ``status`` (4xx), a one-line message and the form field at fault."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


def folder_pairs(folder: Path) -> list[str]:
    """The names of the pairs of ``folder``: image files of the same name in ``folder/A`` and ``folder/B``.

    Raises :class:`ValueError` naming the folder when it, ``A/`` or ``B/`` is missing, or no name is in both.
    """
    for path in (folder, folder / "A", folder / "B"):
        if not path.is_dir():
            raise ValueError(f"{path}: no such folder (--folder needs DIR/A and DIR/B with images of the same names)")
    names = [{p.name for p in (folder / side).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES}
             for side in ("A", "B")]
    pairs = sorted(names[0] & names[1])
    if not pairs:
        raise ValueError(f"{folder}: no image name is in both A/ and B/ (A/ has {len(names[0])}, B/ has "
                         f"{len(names[1])} images)")
    return pairs


def _png_base64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _decode_upload(data: bytes, label: str) -> np.ndarray:
    """An uploaded file as ``uint8 [H, W, 3]``; :class:`InputImageError` naming ``label`` when it is no image."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return to_rgb(im, label)
    except InputImageError:
        raise
    except Exception as err:  # PIL's UnidentifiedImageError, OSError, DecompressionBombError, SyntaxError, ...
        reason = " ".join(str(err).split()) or type(err).__name__
        if "cannot identify image file" in reason:
            reason = "the file is not an image (or not one PIL can read)"
        raise InputImageError(f"{label}: cannot decode image: {reason}") from None


class _Service:
    """The state of one server: the predictor, its lock, the folder's pairs, the upload limit."""

    def __init__(self, predictor: Predictor, folder: Path | None, max_upload_bytes: int, checkpoint: str) -> None:
        self.predictor = predictor
        self.folder = folder
        self.pairs = folder_pairs(folder) if folder is not None else []
        self.max_upload_bytes = int(max_upload_bytes)
        self.checkpoint = checkpoint
        self.lock = threading.Lock()

    def info(self) -> dict[str, Any]:
        p = self.predictor
        return {"checkpoint": self.checkpoint, "device": str(p.device), "input_size": p.input_size,
                "mask_classes": {str(k): v for k, v in p.mask_classes.items()}, "decoding": p.decoding,
                "match_radiometry": p.match_radiometry, "mask_tta": p.mask_tta,
                "max_upload_bytes": self.max_upload_bytes, "max_upload_mb": self.max_upload_bytes / 2**20,
                "folder": str(self.folder) if self.folder is not None else None, "pairs": len(self.pairs)}

    def predict(self, before: Any, after: Any, labels: tuple[str, str], name: str) -> dict[str, Any]:
        """Read the pair (errors name ``labels``), predict under the model lock, encode the pictures."""
        start = time.perf_counter()
        a, b = to_rgb(before, labels[0]), to_rgb(after, labels[1])
        try:
            load_pair(a, b, *labels)
        except InputImageError as err:  # different sizes: both uploads are named
            raise RequestError(422, " ".join(str(err).split())) from None
        with self.lock:
            result = self.predictor.predict(a, b, names=[name])
        assert not isinstance(result, list)
        out = result.to_dict()
        out.setdefault("disagreements", None)
        out["mask_png"] = None if result.mask is None else _png_base64(mask_to_png(result.mask,
                                                                                   self.predictor.num_classes))
        out["overlay_png"] = _png_base64(mask_overlay(b, result.mask))
        out["num_classes"] = self.predictor.num_classes
        out["seconds"] = round(time.perf_counter() - start, 3)
        return out


def _error(status: int, message: str, field: str | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "field": field}, status_code=status)


async def _upload(form: Any, field: str) -> tuple[bytes, str]:
    """The bytes and file name of the upload ``field``; :class:`RequestError` when it is missing or empty."""
    item = form.get(field)
    if item is None:
        raise RequestError(400, f"{field}: no file uploaded (send the files 'before' and 'after', or the field "
                                "'pair' naming a pair of the server's folder)", field)
    if not isinstance(item, UploadFile):
        raise RequestError(400, f"{field}: expected a file upload, got a text field", field)
    data = await item.read()
    name = item.filename or ""
    if not data:
        raise RequestError(400, f"{field}: no file chosen" if not name else f"{field} ({name}): the file is empty",
                           field)
    return data, name


def create_app(
    predictor: Predictor,
    *,
    folder: str | Path | None = None,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    checkpoint: str | Path = "",
) -> Starlette:
    """The web application of ``semcc serve`` around a loaded ``predictor`` (see the module docstring).

    ``folder``: a folder with ``A/`` and ``B/`` images of the same names, offered on the page (``ValueError``
    naming it when it has none); ``max_upload_mb``: the largest request accepted (both images together);
    ``checkpoint``: shown on the page.
    """
    if max_upload_mb <= 0:
        raise ValueError(f"--max-upload-mb: must be positive, got {max_upload_mb}")
    service = _Service(predictor, Path(folder) if folder is not None else None, int(max_upload_mb * 2**20),
                       str(checkpoint))
    page = files("semcc").joinpath(_PAGE).read_text(encoding="utf-8")
    limit_text = f"{max_upload_mb:g} MB"

    async def index(request: Request) -> Response:
        return HTMLResponse(page)

    async def info(request: Request) -> Response:
        return JSONResponse(service.info())

    async def pairs(request: Request) -> Response:
        return JSONResponse({"folder": str(service.folder) if service.folder else None, "pairs": service.pairs})

    async def caption(request: Request) -> Response:
        length = request.headers.get("content-length")
        if length is None:
            raise RequestError(411, "the request has no Content-Length: send the images as multipart/form-data")
        if not length.isdigit():
            raise RequestError(400, f"bad Content-Length {length!r}")
        if int(length) > service.max_upload_bytes:
            raise RequestError(413, f"the upload is {int(length) / 2**20:.1f} MB, over the limit of {limit_text} for "
                                    "both images together (semcc serve --max-upload-mb)")
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise RequestError(400, "send the images as multipart/form-data (files 'before' and 'after', or the "
                                    "field 'pair')")
        async with request.form(max_files=4, max_fields=8) as form:
            pair = form.get("pair")
            if isinstance(pair, str) and pair:
                if pair not in service.pairs:
                    where = f"the folder {service.folder}" if service.folder else "no folder (semcc serve --folder)"
                    raise RequestError(404, f"pair: no pair named {pair!r} in {where}", "pair")
                assert service.folder is not None
                before_in: Any = service.folder / "A" / pair
                after_in: Any = service.folder / "B" / pair
                labels = ("before", "after")
                name = Path(pair).stem
            else:
                (data_a, name_a), (data_b, name_b) = await _upload(form, "before"), await _upload(form, "after")
                labels = (f"before ({name_a})" if name_a else "before", f"after ({name_b})" if name_b else "after")
                before_in = await run_in_threadpool(_decode_upload, data_a, labels[0])
                after_in = await run_in_threadpool(_decode_upload, data_b, labels[1])
                name = Path(name_a).stem or "before"
        out = await run_in_threadpool(service.predict, before_in, after_in, labels, name)
        return JSONResponse(out)

    async def request_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestError)
        return _error(exc.status, exc.message, exc.field)

    async def input_error(request: Request, exc: Exception) -> Response:
        message = " ".join(str(exc).split())
        field = next((f for f in ("before", "after") if message.startswith(f)), None)
        return _error(422, message, field)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _error(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}")

    async def server_error(request: Request, exc: Exception) -> Response:  # uvicorn logs the traceback
        return _error(500, f"internal error ({type(exc).__name__}); the server's log has the details")

    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        RequestError: request_error, InputImageError: input_error, LevirDataError: input_error,
        HTTPException: http_error, Exception: server_error,
    }
    routes = [Route("/", index), Route("/api/info", info), Route("/api/pairs", pairs),
              Route("/api/caption", caption, methods=["POST"])]
    app = Starlette(routes=routes, exception_handlers=handlers)
    app.state.service = service
    return app


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (port 0: a free one), not yet listening; ``OSError`` when it cannot be
    bound. Binding before the model is loaded reports a busy port at once."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def run_server(app: Starlette, sock: socket.socket, *, log_level: str = "info") -> None:
    """Serve ``app`` on the bound ``sock`` with uvicorn until Ctrl+C (SIGINT) or SIGTERM."""
    import uvicorn

    config = uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])
