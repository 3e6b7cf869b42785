"""``semcc serve``, the web page (issue 14, "3. A web page"): its JSON API against :class:`Predictor` on the same
pairs, its error answers, the command's one-line errors, and the page itself in a real headless Chromium (upload a
pair, read the caption and the report, download the mask, see the message of a bad upload)."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from browser import INSTALL_HINT, HeadlessChromium, find_chromium
from semcc.data.inputs import mask_to_png, to_rgb
from semcc.inference import PairPrediction, Predictor
from semcc.main import main

pytest.importorskip("starlette", reason="the web page needs the app extra: pip install -e '.[dev]' (or '.[app]')")
pytest.importorskip("python_multipart", reason="the web page needs python-multipart: pip install -e '.[dev]'")
pytest.importorskip("httpx", reason="Starlette's TestClient needs httpx: pip install -e '.[dev]'")

from starlette.testclient import TestClient

from semcc.serve import create_app, folder_pairs

TRACE_WORDS = ("Traceback", 'File "')  # what a stack trace would show


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def pair_dir(synth_root: Path) -> Path:
    """The session's SynthLEVIR test split: A/ and B/ 64-px pairs of the same names."""
    return synth_root / "LEVIR-CC" / "images" / "test"


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint: Path, pair_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's tiny checkpoint with the bias of its change logit moved so that half the pixels of the first
    test pair are change: a few training steps leave every mask empty, and comparing empty masks proves little."""
    import torch

    name = folder_pairs(pair_dir)[0]
    result = Predictor.from_checkpoint(tiny_checkpoint).predict(pair_dir / "A" / name, pair_dir / "B" / name,
                                                                logits=True)
    assert isinstance(result, PairPrediction) and result.logits is not None and result.logits.shape[0] == 1
    saved = torch.load(tiny_checkpoint, map_location="cpu", weights_only=False)
    saved["state_dict"]["model.cd_head.proj.bias"] -= float(np.median(result.logits))
    path = tmp_path_factory.mktemp("serve-ckpt") / "half-change.ckpt"
    torch.save(saved, path)
    return path


@pytest.fixture(scope="module")
def predictor(checkpoint: Path) -> Predictor:
    return Predictor.from_checkpoint(checkpoint)


@pytest.fixture(scope="module")
def client(predictor: Predictor, pair_dir: Path, checkpoint: Path):
    with TestClient(create_app(predictor, folder=pair_dir, checkpoint=checkpoint)) as c:
        yield c


@pytest.fixture(scope="module")
def bad_files(pair_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An after image cropped to another size, a text file, an empty file."""
    out = tmp_path_factory.mktemp("bad-uploads")
    name = folder_pairs(pair_dir)[0]
    Image.fromarray(to_rgb(pair_dir / "B" / name)[:, :48]).save(out / "small.png")
    (out / "notes.txt").write_text("this is not an image\n")
    (out / "empty.png").write_bytes(b"")
    return {"small": out / "small.png", "text": out / "notes.txt", "empty": out / "empty.png"}


def _decode_png(data: str) -> np.ndarray:
    return np.array(Image.open(io.BytesIO(base64.b64decode(data))))


def _expected(predictor: Predictor, before: Path, after: Path) -> PairPrediction:
    result = predictor.predict(before, after)
    assert isinstance(result, PairPrediction) and result.mask is not None and result.consistency is not None
    return result


def _check_answer(answer: dict, expected: PairPrediction, after: Path, predictor: Predictor) -> None:
    """The API's JSON is the Predictor's result: caption, report, mask pixels, mask over the after image."""
    assert answer["caption"] == expected.caption
    report = expected.to_dict()
    for key in ("claim", "mask", "disagreements", "consistent", "checks", "size"):
        assert answer[key] == report[key], key
    mask = _decode_png(answer["mask_png"])
    assert mask.dtype == np.uint8 and mask.shape == expected.mask.shape
    assert np.array_equal(mask, np.array(mask_to_png(expected.mask, predictor.num_classes)))
    overlay = _decode_png(answer["overlay_png"])
    plain = to_rgb(after)
    assert overlay.shape == plain.shape
    changed = expected.mask > 0
    assert np.array_equal(overlay[~changed], plain[~changed])  # untouched where the mask is empty
    assert (overlay[changed] != plain[changed]).any(axis=-1).all()  # tinted where it is not


# ---------------------------------------------------------------------------------------------- the API
def test_api_caption_of_an_upload_is_the_predictors(client, predictor, pair_dir: Path) -> None:
    name = folder_pairs(pair_dir)[0]
    before, after = pair_dir / "A" / name, pair_dir / "B" / name
    response = client.post("/api/caption", files={"before": (name, before.read_bytes(), "image/png"),
                                                  "after": (name, after.read_bytes(), "image/png")})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["name"] == Path(name).stem and answer["num_classes"] == 2
    expected = _expected(predictor, before, after)
    assert 0.3 < (expected.mask > 0).mean() < 0.7  # the checkpoint fixture's half-change mask
    _check_answer(answer, expected, after, predictor)


def test_api_folder_pairs(client, predictor, pair_dir: Path) -> None:
    names = client.get("/api/pairs").json()["pairs"]
    a_names = {p.name for p in (pair_dir / "A").iterdir()}
    assert names == sorted(a_names & {p.name for p in (pair_dir / "B").iterdir()}) and len(names) >= 2
    name = names[-1]
    response = client.post("/api/caption", data={"pair": name}, files={"none": ("", b"", "text/plain")})
    assert response.status_code == 200, response.text
    _check_answer(response.json(), _expected(predictor, pair_dir / "A" / name, pair_dir / "B" / name),
                  pair_dir / "B" / name, predictor)


def test_api_page_and_info(client, checkpoint: Path) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for element in ('id="before"', 'id="after"', 'id="pair"', 'id="caption"', 'id="overlay"', 'id="download-mask"',
                    'id="disagreements"', 'id="error"', "api/caption"):
        assert element in page.text, element
    info = client.get("/api/info").json()
    assert info["checkpoint"] == str(checkpoint) and info["input_size"] == 64
    # tiny's mask marks building change (the labels it was trained on)
    assert info["max_upload_bytes"] == 50 * 2**20 and info["mask_classes"] == {"1": "building"}
    assert info["match_radiometry"] is True  # tiny's run matches the dates' radiometry
    assert info["mask_tta"] == "d4"  # tiny's run averages the mask over the square's symmetries


@pytest.mark.parametrize(
    ("upload", "status", "words"),
    [
        ({"after": "small"}, 422, ["before (good.png) is 64x64 but after (small.png) is 48x64", "same size"]),
        ({"after": "text"}, 422, ["after (notes.txt): cannot decode image", "not an image"]),
        ({"before": "empty"}, 400, ["before (empty.png): the file is empty"]),
        ({"after": None}, 400, ["after: no file uploaded"]),
        ({"pair": "no-such.png"}, 404, ["pair: no pair named 'no-such.png'"]),
    ],
    ids=["different-sizes", "text-file", "empty-file", "missing-after", "unknown-pair"],
)
def test_api_bad_uploads_are_json_4xx(client, pair_dir: Path, bad_files, upload, status, words) -> None:
    good = (pair_dir / "A" / folder_pairs(pair_dir)[0]).read_bytes()
    files: dict = {"before": ("good.png", good, "image/png"), "after": ("good.png", good, "image/png")}
    data = {}
    for field, kind in upload.items():
        if field == "pair":
            data["pair"] = kind
        elif kind is None:
            del files[field]
        else:
            files[field] = (bad_files[kind].name, bad_files[kind].read_bytes(), "application/octet-stream")
    response = client.post("/api/caption", files=files, data=data)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    message = response.json()["error"]
    assert len(message.splitlines()) == 1 and not any(w in message for w in TRACE_WORDS), message
    for word in words:
        assert word in message, message


def test_api_refuses_big_uploads_and_other_bodies(predictor, pair_dir: Path) -> None:
    with TestClient(create_app(predictor, max_upload_mb=0.01)) as small:  # 10 KiB
        big = (b"x" * 20_000, "image/png")
        response = small.post("/api/caption", files={"before": ("a.png", *big), "after": ("b.png", *big)})
        assert response.status_code == 413
        assert "over the limit of 0.01 MB" in response.json()["error"]
        response = small.post("/api/caption", content=b"before=1", headers={"content-type": "text/plain"})
        assert response.status_code == 400 and "multipart/form-data" in response.json()["error"]
        assert small.get("/api/pairs").json()["pairs"] == []
        response = small.post("/api/caption", data={"pair": "x.png"}, files={"none": ("", b"", "text/plain")})
        assert response.status_code == 404 and "no folder" in response.json()["error"]
        assert small.get("/no/such/page").json()["error"] == "GET /no/such/page: Not Found"
    with pytest.raises(ValueError, match="must be positive"):
        create_app(predictor, max_upload_mb=0)


# ---------------------------------------------------------------------------------------------- the command
def _one_line_error(capsys: pytest.CaptureFixture, *words: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("semcc serve: "), err
    for word in words:
        assert word in err, err
    return err


def test_command_bad_input_is_one_line(tmp_path: Path, tiny_checkpoint: Path, pair_dir: Path, capsys,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nope.ckpt"
    assert main(["serve", "--ckpt", str(missing)]) == 1
    _one_line_error(capsys, f"{missing}: no such checkpoint file")
    (tmp_path / "pairs" / "A").mkdir(parents=True)
    assert main(["serve", "--ckpt", str(tiny_checkpoint), "--folder", str(tmp_path / "pairs")]) == 1
    _one_line_error(capsys, f"{tmp_path / 'pairs' / 'B'}: no such folder")
    with socket.socket() as busy:  # a port something listens on
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--ckpt", str(tiny_checkpoint), "--port", str(port), "--folder", str(pair_dir)]) == 1
        _one_line_error(capsys, f"--port {port}: cannot listen there")
    assert main(["serve", "--ckpt", str(tiny_checkpoint), "--max-upload-mb", "0"]) == 1
    _one_line_error(capsys, "--max-upload-mb: must be positive")
    assert main(["serve"]) == 2  # argparse: --ckpt is required
    capsys.readouterr()
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if the app extra were not installed
    assert main(["serve", "--ckpt", str(tiny_checkpoint)]) == 1
    _one_line_error(capsys, "uvicorn is not installed", "pip install 'semcc[app]'")


# ---------------------------------------------------------------------------------------------- the browser
@pytest.fixture(scope="module")
def chromium() -> str:
    pytest.importorskip("websocket", reason="the browser test needs websocket-client: pip install -e '.[dev]'")
    executable = find_chromium()
    if executable is None:
        if os.environ.get("CI"):  # CI installs Chromium (.ci/run): the browser test must run there
            pytest.fail(INSTALL_HINT)
        pytest.skip(INSTALL_HINT)
    return executable


@pytest.fixture(scope="module")
def server_url(checkpoint: Path, pair_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """``semcc serve`` as a user starts it, in a subprocess on a free loopback port; yields its URL."""
    log = tmp_path_factory.mktemp("serve") / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "semcc.main", "serve", "--ckpt", str(checkpoint), "--host", "127.0.0.1",
             "--port", "0", "--folder", str(pair_dir)], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while True:
            text = log.read_text(errors="replace")
            line = next((w for w in text.split() if w.startswith("http://127.0.0.1:")), None)
            if line is not None and "Application startup complete" in text:
                break
            assert process.poll() is None, f"semcc serve exited with {process.returncode}:\n{text[-3000:]}"
            assert time.monotonic() < deadline, f"semcc serve did not start:\n{text[-3000:]}"
            time.sleep(0.1)
        yield line
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl+C: uvicorn shuts down, the command says so and exits with 0
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    text = log.read_text(errors="replace")
    assert process.returncode == 0 and "semcc serve: stopped" in text and "Traceback" not in text, text[-3000:]


def _click_and_wait(browser: HeadlessChromium, selector_shown: str) -> str:
    browser.evaluate("document.getElementById('run').click()")
    return browser.wait_for(f"!document.getElementById('{selector_shown}').hidden && "
                            f"document.getElementById('{selector_shown}').innerText")


def test_browser_upload_shows_caption_mask_report_and_errors(chromium: str, server_url: str, predictor, pair_dir,
                                                             bad_files, tmp_path: Path) -> None:
    started = time.monotonic()
    names = folder_pairs(pair_dir)
    before, after = pair_dir / "A" / names[0], pair_dir / "B" / names[0]
    expected = _expected(predictor, before, after)
    downloads = tmp_path / "downloads"
    with HeadlessChromium(chromium, tmp_path / "profile") as browser:
        browser.navigate(server_url)
        browser.wait_for("document.body.dataset.ready")
        assert "input 64 px, the dates' radiometry matched;" in browser.evaluate(
            "document.getElementById('info').innerText")
        browser.allow_downloads(downloads)

        # a good upload: the caption, the mask over the after image, the report, the mask download
        browser.set_files("#before", before)
        browser.set_files("#after", after)
        _click_and_wait(browser, "result")
        browser.screenshot(tmp_path / "result.png")
        assert browser.evaluate("document.getElementById('caption').innerText") == expected.caption
        assert browser.evaluate("document.getElementById('error').hidden")
        size = browser.wait_for("(i => i.complete && i.naturalWidth && [i.naturalWidth, i.naturalHeight])"
                                "(document.getElementById('overlay'))")
        assert size == [expected.size[1], expected.size[0]]
        shown = browser.evaluate("[...document.querySelectorAll('#disagreements li')].map(li => li.innerText)")
        report = expected.consistency
        assert shown == ([f"{k}: {d}" for k, d in zip(report.kinds, report.disagreements, strict=True)] or ["none"])
        summary = browser.evaluate("document.getElementById('mask-summary').innerText")
        shown_share = re.match(r"change on ([0-9.]+)% of the pixels", summary)
        assert shown_share, summary
        assert abs(float(shown_share[1]) - 100 * expected.consistency.mask.changed_share) <= 0.051, summary
        assert browser.evaluate("document.getElementById('claim').innerText")
        assert browser.evaluate("document.getElementById('download-mask').download") == f"{before.stem}_mask.png"
        browser.evaluate("document.getElementById('download-mask').click()")
        mask_file = downloads / f"{before.stem}_mask.png"
        deadline = time.monotonic() + 30
        while not (mask_file.is_file() and mask_file.stat().st_size):
            assert time.monotonic() < deadline, f"no download in {sorted(downloads.iterdir())}"
            time.sleep(0.05)
        time.sleep(0.2)  # let Chromium finish writing it
        assert np.array_equal(np.array(Image.open(mask_file)), np.array(mask_to_png(expected.mask)))

        # a pair of the server's folder
        other = _expected(predictor, pair_dir / "A" / names[-1], pair_dir / "B" / names[-1])
        browser.evaluate(f"document.getElementById('pair').value = {json.dumps(names[-1])}")
        browser.evaluate("document.getElementById('caption').innerText = ''")
        _click_and_wait(browser, "caption")
        assert browser.evaluate("document.getElementById('caption').innerText") == other.caption
        assert browser.evaluate("document.getElementById('status').innerText").startswith(f"{Path(names[-1]).stem}:")
        shown_mask = browser.evaluate("document.getElementById('mask').src").split(",", 1)
        assert shown_mask[0] == "data:image/png;base64"
        assert np.array_equal(_decode_png(shown_mask[1]), np.array(mask_to_png(other.mask)))
        browser.evaluate("document.getElementById('pair').value = ''")

        # bad uploads: the message on the page, naming the upload; no stack trace, no stale result
        for bad, words in ((bad_files["small"], [f"before ({before.name}) is 64x64", "after (small.png) is 48x64"]),
                           (bad_files["text"], ["after (notes.txt): cannot decode image"])):
            browser.set_files("#after", bad)
            message = _click_and_wait(browser, "error")
            for word in words:
                assert word in message, message
            assert browser.evaluate("document.getElementById('result').hidden")
            page = browser.evaluate("document.body.innerText")
            assert not any(w in page for w in ("Traceback", 'File "')), page
        browser.navigate(server_url)  # a fresh page, the after image not chosen: the page says so, sends nothing
        browser.wait_for("document.body.dataset.ready")
        browser.set_files("#before", before)
        assert _click_and_wait(browser, "error") == "after: no file chosen"
        browser.screenshot(tmp_path / "error.png")
    print(f"browser test: {time.monotonic() - started:.1f} s")
