"""The explorer in a real browser: headless Chromium driven over the DevTools protocol.

The server runs in a thread on a free loopback port with two numpy models; the test draws a
stroke figure with synthesised mouse events, checks that every model's probabilities appear
and sum to 1, moves the rotation slider with the keyboard and checks that they change and
equal the library's ``perturb`` + ``predict_proba`` for the same digit and magnitude, saves
the digit and finds its PNG, and checks there was no console error and no CSP violation.
Chromium is Debian's /usr/bin/chromium, as for the report's browser test (whose DevTools client
this reuses); without it the test is skipped, except under CI. With
ROBUST_MNIST_UPDATE_SCREENSHOT=1 the page's screenshot is also written to docs/explore.png.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

import robust_mnist
from robust_mnist.explore.server import Explorer
from robust_mnist.explore.session import ExploreSession
from test_explore import two_models
from test_report_browser import WIDTH, browser  # noqa: F401  (the browser fixture)

pytestmark = pytest.mark.browser

SCREENSHOT = Path(__file__).parent.parent / "docs" / "explore.png"
CSP_PROBE = (
    "window.__csp = []; document.addEventListener('securitypolicyviolation',"
    " e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"
)


def wait_until(browser, expression: str, timeout: float = 30) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = browser.evaluate(expression)
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"still false after {timeout} s: {expression}")
        time.sleep(0.05)


def settled(browser) -> None:
    wait_until(browser, "!explorer.inFlight && !explorer.dirty")


def shown_probabilities(browser) -> list[list[float]]:
    return browser.evaluate(
        "Array.from(document.querySelectorAll('#bars .model')).map(m =>"
        " Array.from(m.querySelectorAll('.bar')).map(b => parseFloat(b.dataset.p)))")


def console_errors(browser) -> list[dict]:
    return [
        event["params"] for event in browser.events
        if event.get("method") == "Runtime.exceptionThrown"
        or (event.get("method") == "Runtime.consoleAPICalled" and event["params"]["type"] == "error")
        or (event.get("method") == "Log.entryAdded" and event["params"]["entry"]["level"] == "error")
    ]


def test_draw_push_and_save_in_a_real_browser(browser, tmp_path):  # noqa: F811
    session = ExploreSession(two_models(), digits_dir=tmp_path / "own_digits")
    explorer = Explorer(session, "127.0.0.1", 0).start()
    try:
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.call(f"{domain}.enable")
        browser.call("Page.addScriptToEvaluateOnNewDocument", source=CSP_PROBE)
        browser.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=1000, deviceScaleFactor=1, mobile=False)
        browser.events.clear()
        browser.call("Page.navigate", url=explorer.url)
        browser.wait_for("Page.loadEventFired")
        wait_until(browser, "window.explorer && explorer.ready === true")
        assert browser.evaluate("document.querySelectorAll('#sliders input[type=range]').length") == len(
            browser.evaluate("explorer.config.sliders"))

        # A stroke figure: a "7", drawn with the mouse (pointer events come from these).
        box = browser.evaluate(
            "(() => { const r = document.getElementById('canvas').getBoundingClientRect(); return [r.x, r.y, r.width]; })()")
        x0, y0, size = box
        points = [(0.25, 0.2), (0.45, 0.2), (0.75, 0.2), (0.65, 0.45), (0.55, 0.65), (0.45, 0.85)]
        first = points[0]
        browser.call("Input.dispatchMouseEvent", type="mousePressed", x=x0 + first[0] * size, y=y0 + first[1] * size,
                     button="left", buttons=1, clickCount=1)
        for fx, fy in points[1:]:
            browser.call("Input.dispatchMouseEvent", type="mouseMoved", x=x0 + fx * size, y=y0 + fy * size,
                         button="left", buttons=1)
        last = points[-1]
        browser.call("Input.dispatchMouseEvent", type="mouseReleased", x=x0 + last[0] * size, y=y0 + last[1] * size,
                     button="left", buttons=0, clickCount=1)
        wait_until(browser, "explorer.last !== null && explorer.digit !== null")
        settled(browser)
        before = shown_probabilities(browser)
        assert len(before) == 2 and all(len(row) == 10 for row in before)
        for row in before:
            assert sum(row) == pytest.approx(1.0, abs=1e-5)
        digit = np.array(browser.evaluate("explorer.digit"), np.float32).reshape(28, 28)
        assert digit.max() == pytest.approx(1.0) and 14 <= (digit > 0.1).sum() <= 400

        # The rotation slider, moved with the keyboard: 20 steps of 1 degree.
        browser.evaluate("document.getElementById('slider-rotate').focus()")
        assert browser.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"
        for _ in range(20):
            for kind in ("keyDown", "keyUp"):
                browser.call("Input.dispatchKeyEvent", type=kind, key="ArrowRight", code="ArrowRight",
                             windowsVirtualKeyCode=39, nativeVirtualKeyCode=39)
        wait_until(browser, "explorer.last && explorer.last.settings.rotate === 20 && !explorer.inFlight && !explorer.dirty")
        after = shown_probabilities(browser)
        assert after != before
        rotated, _ = robust_mnist.perturb("rotate", digit[None], 20.0, seed=session.seed)
        for row, model in zip(after, session.models):
            assert sum(row) == pytest.approx(1.0, abs=1e-5)
            np.testing.assert_allclose(row, model.classifier.predict_proba(rotated)[0], atol=1e-7)

        # The sweep of every family, with its headline and one chart per family.
        wait_until(browser, "explorer.sweep !== null && document.getElementById('headline').textContent.length > 10")
        assert browser.evaluate("document.querySelectorAll('#charts .chart').length") == len(
            browser.evaluate("explorer.config.sliders"))

        # Save: the label chosen on the page, the path chosen by the server.
        browser.evaluate("(() => { const s = document.getElementById('label'); s.value = '7';"
                         " s.dispatchEvent(new Event('change')); })()")
        browser.click("#save")
        saved = wait_until(browser, "explorer.saved")
        assert saved == "7_1.png" and (tmp_path / "own_digits" / "7_1.png").is_file()

        settled(browser)
        assert console_errors(browser) == []
        assert browser.evaluate("window.__csp") == []
        requested = [event["params"]["request"]["url"] for event in browser.events
                     if event.get("method") == "Network.requestWillBeSent"]
        assert requested and all(url.startswith(explorer.url) or url.startswith("data:") for url in requested)

        browser.evaluate("window.scrollTo(0, 0)")
        shot = tmp_path / "explore.png"
        browser.screenshot(shot)
        assert shot.stat().st_size > 20_000
        if os.environ.get("ROBUST_MNIST_UPDATE_SCREENSHOT") == "1":
            SCREENSHOT.parent.mkdir(exist_ok=True)
            shutil.copy(shot, SCREENSHOT)
    finally:
        explorer.stop()
