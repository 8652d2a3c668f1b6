"""Headless Chromium driven over the Chrome DevTools Protocol (CDP), with the pinned `websockets`.

No WebDriver dependency: Chromium is started with a fresh profile and `--remote-debugging-port=0`,
the port it picked is read from `DevToolsActivePort`, and the test talks to the page target.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from websockets.sync.client import ClientConnection, connect

CHROMIUM = Path(os.environ.get("CHROMIUM_BIN") or "/usr/bin/chromium")
INSTALL_HINT = (
    "headless Chromium is missing ({path}); install it with `scripts/install_chromium.sh` "
    "(Debian packages chromium and chromium-driver, needs root)"
)
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)

T = TypeVar("T")


class BrowserError(RuntimeError):
    pass


class Browser:
    """One headless Chromium with one page; close() ends the process and removes the profile."""

    def __init__(self, width: int = 1600, height: int = 1900, binary: Path = CHROMIUM) -> None:
        if not binary.is_file():
            raise BrowserError(INSTALL_HINT.format(path=binary))
        self._profile = Path(tempfile.mkdtemp(prefix="tickhouse-chromium-"))
        self._log = (self._profile / "chromium.log").open("wb")
        self._process = subprocess.Popen(
            [
                str(binary),
                *CHROMIUM_FLAGS,
                f"--user-data-dir={self._profile}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its zygote and renderers share our process group id
        )
        self._ids = itertools.count(1)
        try:
            port = self._devtools_port(timeout=30)
            self._ws = self._page_socket(port, timeout=15)
            self.call("Page.enable")
            self.call("Runtime.enable")
        except BaseException:
            self.close()
            raise

    def _devtools_port(self, timeout: float) -> int:
        active = self._profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BrowserError(f"chromium exited with {self._process.returncode}: {self.log_tail()}")
            if active.is_file():
                first = active.read_text().splitlines()[:1]
                if first and first[0].isdigit():
                    return int(first[0])
            time.sleep(0.1)
        raise BrowserError(f"chromium did not open its DevTools port within {timeout} s: {self.log_tail()}")

    def _page_socket(self, port: int, timeout: float) -> ClientConnection:
        deadline = time.monotonic() + timeout
        while True:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as resp:
                targets = json.loads(resp.read())
            pages = [t for t in targets if t.get("type") == "page"]
            if pages:
                return connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=10)
            if time.monotonic() > deadline:
                raise BrowserError(f"no page target in {targets}")
            time.sleep(0.1)

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return (self._profile / "chromium.log").read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def call(self, method: str, timeout: float = 30, **params: Any) -> dict[str, Any]:
        """Send one CDP command and return its result (events in between are dropped)."""
        message_id = next(self._ids)
        self._ws.send(json.dumps({"id": message_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrowserError(f"{method}: no answer within {timeout} s")
            message = json.loads(self._ws.recv(timeout=remaining))
            if message.get("id") != message_id:
                continue
            if "error" in message:
                raise BrowserError(f"{method}: {message['error']}")
            result: dict[str, Any] = message.get("result", {})
            return result

    def navigate(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str) -> Any:
        """Evaluate a JS expression in the page and return its JSON value."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"JS error: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(
        self, what: str, probe: Callable[[], T | None], timeout: float = 60, every: float = 0.25
    ) -> T:
        """Poll `probe` until it returns something truthy; fail naming `what` and the page text."""
        deadline = time.monotonic() + timeout
        last: T | None = None
        while time.monotonic() < deadline:
            last = probe()
            if last:
                return last
            time.sleep(every)
        text = self.evaluate("document.body ? document.body.innerText.slice(0, 3000) : ''")
        raise AssertionError(
            f"timed out after {timeout} s waiting for {what}; last probe: {last!r}\npage text:\n{text}"
        )

    def click(self, selector: str) -> None:
        """A real mouse click at the centre of the first element matching `selector`."""
        box = self.evaluate(
            f"""(() => {{ const e = document.querySelector({json.dumps(selector)});
                if (!e) return null; e.scrollIntoView({{block: 'center'}});
                const r = e.getBoundingClientRect();
                return {{x: r.x + r.width / 2, y: r.y + r.height / 2}}; }})()"""
        )
        if not box:
            raise BrowserError(f"no element matches {selector!r}")
        self.click_at(box["x"], box["y"])

    def click_at(self, x: float, y: float) -> None:
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def type_text(self, text: str) -> None:
        self.call("Input.insertText", text=text)

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=False)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        ws = getattr(self, "_ws", None)
        if ws is not None:
            ws.close()
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, signal.SIGKILL)  # any helper process left of this browser
        self._log.close()
        shutil.rmtree(self._profile, ignore_errors=True)


def _answers(url: str, ready: Callable[[bytes], bool]) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200 and ready(resp.read())
    except (OSError, ValueError):  # URLError, connection refused or reset, timeout
        return False


@contextlib.contextmanager
def served(name: str, command: list[str], *, cwd: Path, env: dict[str, str], log_path: Path,
           probe_url: str, ready: Callable[[bytes], bool] = lambda _body: True,
           timeout: float = 30) -> Iterator[None]:
    """Run a web app the way a user starts it, until `probe_url` answers 200 with a body `ready`
    accepts; fail the test with the app's log if it exits or never does; stop it afterwards."""
    import pytest

    log_path.parent.mkdir(exist_ok=True)
    with log_path.open("wb") as log:
        server = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while not _answers(probe_url, ready):
            if server.poll() is not None:
                pytest.fail(f"{name} exited with {server.returncode}:\n"
                            f"{log_path.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"{name} not ready within {timeout:.0f} s:\n"
                            f"{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        yield
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)
