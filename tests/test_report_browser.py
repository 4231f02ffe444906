"""The report in a real browser: headless Chromium driven over the DevTools protocol.

Opens the report of a small study from disk and checks what a reader would notice: the page
loads without a console error, nothing is requested beyond the file itself and its data: URIs,
every image decodes, clicking a sortable header sorts the rows, and the page looks right (a
full-page screenshot is saved in the test's tmp_path; with ROBUST_MNIST_UPDATE_SCREENSHOT=1 the
README's docs/report.png is refreshed from it).

Chromium is Debian's /usr/bin/chromium (no browser downloads are possible here). Without it the
test is skipped, except under CI (CI=true), where it fails.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from test_report import make_run

pytestmark = pytest.mark.browser

HERE = Path(__file__).parent
SCREENSHOT = HERE.parent / "docs" / "report.png"
WIDTH = 1280
#: Height of the README screenshot: the top of the page, where a visitor looks first.
README_HEIGHT = 2600


def chromium_path() -> str | None:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


class DevTools:
    """A minimal Chrome DevTools Protocol client over the browser's websocket."""

    def __init__(self, executable: str, profile: Path) -> None:
        import websocket  # websocket-client, from the test extra

        self.process = subprocess.Popen(
            [executable, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--hide-scrollbars", "--mute-audio", f"--user-data-dir={profile}",
             "--remote-debugging-port=0", f"--window-size={WIDTH},900", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.is_file() and len(port_file.read_text().split()) >= 2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError("chromium did not start its DevTools endpoint")
            time.sleep(0.05)
        port, path = port_file.read_text().split()[:2]
        self.socket = websocket.create_connection(f"ws://127.0.0.1:{port}{path}", timeout=60,
                                                  suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    def call(self, method: str, session: bool = True, **params) -> dict:
        """Send a command (to the page's session unless ``session`` is false) and wait for it."""
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if session and getattr(self, "session", None):
            message["sessionId"] = self.session
        self.socket.send(json.dumps(message))
        while True:
            reply = json.loads(self.socket.recv())
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 60) -> dict:
        """The first event ``method`` (already received or arriving within ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for event in self.events[seen:]:
                if event.get("method") == method:
                    return event
            seen = len(self.events)
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {method} within {timeout} s")
            self.events.append(json.loads(self.socket.recv()))

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True,
                           returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:60]}...: {result['exceptionDetails']}")
        return result["result"].get("value")

    def click(self, selector: str) -> None:
        """A real mouse click in the middle of the element (scrolled into view first)."""
        box = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.scrollIntoView({{block: 'center'}});"
            " const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    def screenshot(self, path: Path, height: int | None = None) -> None:
        """Save a PNG of the whole page (or of its top ``height`` pixels)."""
        metrics = self.call("Page.getLayoutMetrics")
        full = int(metrics["cssContentSize"]["height"])
        height = full if height is None else min(height, full)
        self.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=height, deviceScaleFactor=1, mobile=False)
        shot = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                         clip={"x": 0, "y": 0, "width": WIDTH, "height": height, "scale": 1})
        path.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        if getattr(self, "socket", None) is not None:
            self.socket.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    executable = chromium_path()
    missing = None
    if executable is None:
        missing = "chromium is not installed (apt-get install chromium)"
    else:
        try:
            import websocket  # noqa: F401
        except ImportError:
            missing = "websocket-client is not installed (pip install -e '.[test]')"
    if missing:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(missing)
        pytest.skip(missing)
    devtools = DevTools(executable, tmp_path_factory.mktemp("chromium-profile"))
    yield devtools
    devtools.close()


@pytest.fixture(scope="module")
def opened(browser, tmp_path_factory):
    """The small study's report, loaded in the browser (network and console recorded)."""
    from robust_mnist.html.study_report import write_report

    folder = tmp_path_factory.mktemp("browser-report")
    report = write_report(make_run(folder / "run"), folder / "report.html")
    for domain in ("Page", "Runtime", "Log", "Network"):
        browser.call(f"{domain}.enable")
    browser.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=900, deviceScaleFactor=1, mobile=False)
    url = report.resolve().as_uri()
    browser.call("Page.navigate", url=url)
    browser.wait_for("Page.loadEventFired")
    return browser, url, folder


def test_page_loads_without_console_errors(opened):
    browser, _, _ = opened
    assert browser.evaluate("document.readyState") == "complete"
    assert browser.evaluate("document.querySelectorAll('section').length") > 5
    errors = [
        event["params"] for event in browser.events
        if event.get("method") == "Runtime.exceptionThrown"
        or (event.get("method") == "Runtime.consoleAPICalled" and event["params"]["type"] == "error")
        or (event.get("method") == "Log.entryAdded" and event["params"]["entry"]["level"] == "error")
    ]
    assert errors == []


def test_no_request_leaves_the_file(opened):
    browser, url, _ = opened
    requested = [event["params"]["request"]["url"] for event in browser.events
                 if event.get("method") == "Network.requestWillBeSent"]
    assert url in requested
    outside = [u for u in requested if u != url and not u.startswith("data:")]
    assert outside == []
    # The resources the page actually holds are all data: URIs.
    sources = browser.evaluate(
        "performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith('data:'))")
    assert sources == []


def test_every_image_decodes(opened):
    browser, _, _ = opened
    widths = browser.evaluate(
        "Promise.all(Array.from(document.images).map(i => i.decode().then(() => i.naturalWidth, () => 0)))")
    assert len(widths) >= 10
    assert min(widths) > 0


def _column(browser, table: str, index: int) -> list[float]:
    return browser.evaluate(
        f"Array.from(document.querySelectorAll('{table} tbody tr'))"
        f".map(r => parseFloat(r.cells[{index}].getAttribute('data-sort')))")


def test_clicking_a_header_sorts_the_rows_numerically(opened):
    browser, _, _ = opened
    table = "#class-table"
    headers = browser.evaluate(f"Array.from(document.querySelectorAll('{table} thead th')).map(h => h.textContent.trim())")
    index = headers.index("Mean swing")
    before = _column(browser, table, index)
    assert before != sorted(before)  # the table does not start sorted by swing

    browser.click(f"{table} thead th:nth-child({index + 1})")
    ascending = _column(browser, table, index)
    assert ascending == sorted(before)
    browser.click(f"{table} thead th:nth-child({index + 1})")
    descending = _column(browser, table, index)
    assert descending == sorted(before, reverse=True)
    # Numeric, not textual: the "Class" column 0..9 sorts as numbers too.
    browser.click(f"{table} thead th:nth-child(2)")
    assert _column(browser, table, 1) == sorted(_column(browser, table, 1))


def test_screenshot(opened, tmp_path):
    """A full-page screenshot (test artifact); with ROBUST_MNIST_UPDATE_SCREENSHOT=1 also the
    README's docs/report.png: the top of the page, of the run in ROBUST_MNIST_SCREENSHOT_RUN
    (a real study, such as runs/quick) when given, else of this test's small study."""
    browser, _, folder = opened
    browser.evaluate("window.scrollTo(0, 0)")
    path = folder / "report.png"
    browser.screenshot(path)
    assert path.stat().st_size > 50_000
    shutil.copy(path, tmp_path / "report.png")
    if os.environ.get("ROBUST_MNIST_UPDATE_SCREENSHOT") == "1":
        run = os.environ.get("ROBUST_MNIST_SCREENSHOT_RUN")
        if run:
            from robust_mnist.html.study_report import write_report

            page = write_report(run, folder / "readme.html")
            browser.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=900, deviceScaleFactor=1, mobile=False)
            browser.events.clear()
            browser.call("Page.navigate", url=page.resolve().as_uri())
            browser.wait_for("Page.loadEventFired")
        SCREENSHOT.parent.mkdir(exist_ok=True)
        browser.screenshot(SCREENSHOT, height=README_HEIGHT)
