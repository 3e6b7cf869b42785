"""A headless Chromium driven through the Chrome DevTools Protocol, for tests of web pages (``semcc serve``).

The system's Chromium (Debian: ``apt-get install chromium``; or ``$SEMCC_CHROMIUM``) is started with
``--remote-debugging-port=0``; it writes the port it chose to ``DevToolsActivePort`` in its profile folder. One
WebSocket (websocket-client) talks to the browser: a page target is created and attached in flat mode, so that page
commands carry its ``sessionId`` and browser commands (downloads) do not. What the tests need, and no more:
navigate, evaluate JavaScript, wait for a condition, choose files for an ``<input type=file>``, allow downloads into
a folder, take a screenshot. No driver binary (chromedriver) and no browser download (playwright) is involved.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

#: Names of a Chromium executable, searched on PATH in this order after ``$SEMCC_CHROMIUM``.
CHROMIUM_NAMES = ("chromium", "chromium-browser", "chromium-headless-shell", "google-chrome", "google-chrome-stable")
INSTALL_HINT = ("no Chromium found: install it (Debian / Ubuntu: apt-get install -y chromium) or set SEMCC_CHROMIUM "
                "to a Chrome / Chromium executable")


def find_chromium() -> str | None:
    """The Chromium executable to use, or ``None``."""
    given = os.environ.get("SEMCC_CHROMIUM")
    if given:
        return given
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


class BrowserError(RuntimeError):
    """A DevTools command failed, JavaScript threw, or a wait ran out."""


class HeadlessChromium:
    """One headless Chromium with one page; use as a context manager (the browser is closed on exit)."""

    def __init__(self, executable: str, profile: Path, *, timeout: float = 60.0, width: int = 1200,
                 height: int = 1000) -> None:
        import websocket  # websocket-client

        self.timeout = timeout
        profile.mkdir(parents=True, exist_ok=True)
        port_file = profile / "DevToolsActivePort"
        port_file.unlink(missing_ok=True)
        args = [executable, "--headless=new", "--remote-debugging-port=0", f"--user-data-dir={profile}",
                "--no-first-run", "--no-default-browser-check", "--disable-gpu", "--disable-extensions",
                "--disable-dev-shm-usage", "--remote-allow-origins=*", f"--window-size={width},{height}",
                "about:blank"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
        self._log = (profile / "chromium.log").open("wb")
        self.process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while not (port_file.is_file() and len(port_file.read_text().splitlines()) >= 2):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise BrowserError(f"Chromium did not start (exit {self.process.poll()}): "
                                       f"{(profile / 'chromium.log').read_text(errors='replace')[-2000:]}")
                time.sleep(0.05)
            port, path = port_file.read_text().splitlines()[:2]
            self._ws = websocket.create_connection(f"ws://127.0.0.1:{port}{path}", timeout=timeout,
                                                   suppress_origin=True)
            self._next_id = 0
            self.session: str | None = None
            target = self.send("Target.createTarget", url="about:blank")["targetId"]
            self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            self.send("Page.enable")
            self.send("Runtime.enable")
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> HeadlessChromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, method: str, *, browser: bool = False, **params: Any) -> dict[str, Any]:
        """Send one DevTools command (to the page, or to the browser) and return its result."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if self.session is not None and not browser:
            message["sessionId"] = self.session
        self._ws.send(json.dumps(message))
        while True:  # events interleave with answers: skip them
            answer = json.loads(self._ws.recv())
            if answer.get("id") == self._next_id:
                break
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error']}")
        return answer.get("result", {})

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression on the page (promises are awaited)."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise BrowserError(f"{expression!r} threw: {details.get('exception', {}).get('description', details)}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float | None = None) -> Any:
        """Evaluate ``expression`` until it is truthy and return its value; :class:`BrowserError` on time-out."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"timed out waiting for {expression!r}")
            time.sleep(0.05)

    def navigate(self, url: str) -> None:
        """Open ``url`` and wait until the document has loaded."""
        self.send("Page.navigate", url=url)
        self.wait_for(f"location.href === {json.dumps(url)} && document.readyState === 'complete' && "
                      "!window.__navigatedBefore")
        self.evaluate("window.__navigatedBefore = true")

    def set_files(self, selector: str, *paths: Path) -> None:
        """Choose ``paths`` in the ``<input type=file>`` that ``selector`` finds (as a user picking files would;
        the page sees ``input`` and ``change`` events)."""
        root = self.send("DOM.getDocument", depth=0)["root"]["nodeId"]
        node = self.send("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
        if not node:
            raise BrowserError(f"no element matches {selector!r}")
        self.send("DOM.setFileInputFiles", nodeId=node, files=[str(Path(p).resolve()) for p in paths])

    def allow_downloads(self, folder: Path) -> None:
        """Save the page's downloads into ``folder`` (without asking)."""
        folder.mkdir(parents=True, exist_ok=True)
        self.send("Browser.setDownloadBehavior", browser=True, behavior="allow", downloadPath=str(folder.resolve()))

    def screenshot(self, path: Path) -> Path:
        """A PNG of the whole page (beyond the window, too)."""
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        """Close the browser (and kill it if it does not exit)."""
        ws = getattr(self, "_ws", None)
        if ws is not None:
            with contextlib.suppress(Exception):  # already gone
                self.send("Browser.close", browser=True)
            ws.close()
            self._ws = None
        if self.process.poll() is None:
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
