"""The explorer in a real browser: Voila serves a notebook, Chromium (Playwright) uses it.

The unit tests in test_widgets.py drive the widget from Python; this one checks what a
reader sees: the plotly timeline and the frame view render, and moving the threshold
slider with the keyboard changes the table of flagged intervals exactly as
``vadnb.widgets.flagged_intervals`` says it should. A screenshot is saved to
``test-artifacts/explorer.png`` (git-ignored) for a person to look at.

Needs: ``apt-get install -y chromium`` (Debian's browser at /usr/bin/chromium; never
``playwright install``) and ``pip install voila playwright``. Everything listens on
127.0.0.1 only, every wait has a timeout, and the server is stopped in the fixture's
teardown.
"""

from __future__ import annotations

import importlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vadnb.detect import Detection
from vadnb.video import probe
from vadnb.widgets import flagged_intervals

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "tests" / "browser_support" / "explorer_demo.ipynb"
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = Path(os.environ.get("VADNB_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
START_THRESHOLD = 0.5  # the demo notebook's explorer(..., threshold=0.5)
STEP = 0.01  # the threshold slider's step: one arrow key press

pytestmark = pytest.mark.notebook  # it executes a notebook (through Voila)


def _require(condition: bool, reason: str) -> None:
    """Skip locally, but fail in CI (CI=true): there the browser test must run."""
    if condition:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(reason)
    pytest.skip(reason)


def _require_module(name: str, install: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        _require(False, f"{name} is not installed: {install}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"voila exited with code {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"voila did not listen on 127.0.0.1:{port} within {timeout:.0f} s:\n"
                       f"{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    """Stop the server and its kernel (they share the process group we gave them)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


class Server:
    """A Voila server started by the ``voila`` fixture (it does not wait for it to listen,
    so Chromium starts meanwhile)."""

    def __init__(self, proc: subprocess.Popen, port: int, out: Path, log: Path,
                 runtime: Path) -> None:
        self.proc, self.port, self.out, self.log, self.runtime = proc, port, out, log, runtime
        self.url = f"http://127.0.0.1:{port}/"

    def wait_ready(self, timeout: float) -> None:
        _wait_for_port(self.port, self.proc, self.log, timeout)

    def stop(self) -> None:
        _stop(self.proc)
        # the kernel runs in a session of its own; its connection file lies in our
        # private runtime folder, so any process naming that folder is ours to end
        for pid in _pids_mentioning(str(self.runtime)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _pids_mentioning(text: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            pids.append(int(entry.name))
    return pids


@pytest.fixture
def voila(tmp_path, session_cache):
    """Voila serving the demo notebook on a free 127.0.0.1 port (a :class:`Server`)."""
    _require(CHROMIUM.exists(), f"{CHROMIUM} not found: apt-get install -y chromium")
    _require_module("voila", "pip install voila")
    out = tmp_path / "detection"
    runtime = tmp_path / "jupyter-runtime"
    runtime.mkdir()
    log = tmp_path / "voila.log"
    port = _free_port()
    env = {**os.environ, "VADNB_DEMO_OUT": str(out), "VADNB_CACHE": str(session_cache),
           "JUPYTER_RUNTIME_DIR": str(runtime), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "MPLBACKEND": "Agg"}
    cmd = [sys.executable, "-m", "voila", str(DEMO), "--no-browser", f"--port={port}",
           "--Voila.ip=127.0.0.1", "--Voila.port_retries=0", "--VoilaExecutor.timeout=60",
           "--VoilaConfiguration.show_tracebacks=True"]
    with open(log, "wb") as sink:
        proc = subprocess.Popen(cmd, cwd=str(DEMO.parent), env=env, stdout=sink,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    server = Server(proc, port, out, log, runtime)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def browser(tmp_path):
    """Debian's Chromium, headless, with a fresh profile folder."""
    _require(CHROMIUM.exists(), f"{CHROMIUM} not found: apt-get install -y chromium")
    sync_api = _require_module("playwright.sync_api", "pip install playwright")
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM),
            headless=True, args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 1300},
            timeout=30_000)
        # nothing leaves this machine: any request not to 127.0.0.1 is refused
        context.blocked = []

        def local_only(route):
            url = route.request.url
            if url.startswith(("http://127.0.0.1:", "ws://127.0.0.1:", "data:", "blob:")):
                route.continue_()
            else:
                context.blocked.append(url)
                route.abort()

        context.route("**/*", local_only)
        try:
            yield context
        finally:
            context.close()


def _key_presses(det: Detection, start: float) -> tuple[int, float]:
    """The fewest arrow-key steps from ``start`` that change the number of flagged intervals.

    Returns (signed steps, the threshold they reach): negative steps lower the threshold.
    """
    before = len(flagged_intervals(det.frame_scores, start, det.fps))
    for k in range(1, 101):
        for steps in (-k, k):
            threshold = round(start + steps * STEP, 2)
            if 0 <= threshold <= 1 and \
                    len(flagged_intervals(det.frame_scores, threshold, det.fps)) != before:
                return steps, threshold
    raise AssertionError("no threshold within reach changes the flagged intervals: "
                         f"scores span {det.frame_scores.min():.3f}..{det.frame_scores.max():.3f}")


def _rows(page) -> int:
    return page.locator(".vadnb-flagged tbody tr").count()


class Budget:
    """The whole test gets ``seconds``; every wait takes the smaller of its own limit and
    what is left, so a slow machine fails with a timeout rather than hanging CI."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def ms(self, limit_s: float) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            pytest.fail("the browser test ran out of its time budget")
        return 1000 * min(limit_s, left)


def test_explorer_renders_and_threshold_slider_updates_flagged_intervals(voila, browser):
    budget = Budget(75)  # fixtures (Chromium launch) and teardown come on top: ~10 s
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))

    def context() -> str:
        return (f"page errors: {errors[:5]}\nrefused non-local requests: {browser.blocked[:5]}\n"
                f"voila log:\n{voila.log.read_text()[-2500:]}")

    voila.wait_ready(budget.ms(30) / 1000)
    # Voila runs the notebook (classical baseline on one clip) before it answers
    try:
        page.goto(voila.url, timeout=budget.ms(60), wait_until="domcontentloaded")
        page.wait_for_selector(".vadnb-explorer", state="visible", timeout=budget.ms(30))
    except Exception as err:  # noqa: BLE001 - add the server's log to the failure
        pytest.fail(f"the explorer did not appear: {err}\n{context()}")

    # the timeline: plotly drew its SVG, with the score line as a trace
    page.wait_for_selector(".vadnb-explorer .js-plotly-plot .main-svg", timeout=budget.ms(20))
    assert page.locator(".vadnb-explorer .js-plotly-plot .scatterlayer .trace").count() >= 1, \
        context()
    # the frame view: a decoded JPEG, not a broken image
    page.wait_for_function(
        "() => { const i = document.querySelector('img.vadnb-frame');"
        " return i && i.complete && i.naturalWidth > 0; }", timeout=budget.ms(20))
    width = page.eval_on_selector("img.vadnb-frame", "i => i.naturalWidth")

    det = Detection.load(voila.out)  # what the kernel computed, saved by the notebook
    assert width == min(480, probe(det.video).width)  # the explorer's max_width is 480
    steps, target = _key_presses(det, START_THRESHOLD)
    expected_before = len(flagged_intervals(det.frame_scores, START_THRESHOLD, det.fps))
    expected_after = len(flagged_intervals(det.frame_scores, target, det.fps))
    rows_js = "document.querySelectorAll('.vadnb-flagged tbody tr').length"
    page.wait_for_function(f"() => {rows_js} === {min(expected_before, 20)}",
                           timeout=budget.ms(10))
    rows_before = _rows(page)

    # move the slider as a person would: focus its handle, press arrow keys
    handle = page.locator(".vadnb-threshold .noUi-handle")
    handle.focus(timeout=budget.ms(10))
    key = "ArrowLeft" if steps < 0 else "ArrowRight"
    for _ in range(abs(steps)):
        handle.press(key, timeout=budget.ms(5))
    readout = page.locator(".vadnb-threshold .widget-readout")
    try:
        page.wait_for_function(f"() => {rows_js} === {min(expected_after, 20)}",
                               timeout=budget.ms(15))
    except Exception:  # noqa: BLE001
        pytest.fail(f"after {steps:+d} key presses the readout shows {readout.inner_text()!r} "
                    f"and the table {_rows(page)} rows; expected {expected_after} rows at "
                    f"{target:.2f}\n{context()}")
    rows_after = _rows(page)
    assert readout.inner_text(timeout=budget.ms(5)).strip() == f"{target:.2f}"
    assert rows_before == min(expected_before, 20)
    assert rows_after == min(expected_after, 20) != rows_before

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "explorer.png"
    page.screenshot(path=str(shot), full_page=True, timeout=budget.ms(15))
    assert shot.stat().st_size > 10_000
    assert not errors, context()


# --------------------------------------------------------------------------- the main job's index

EVIL = "<img src=x onerror=alert(1)>"


def _fake_run(run_dir: Path) -> list[dict]:
    """A run folder as the main job leaves it, with HTML-looking names everywhere (issue 15)."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = []
    for k, (stem, status) in enumerate([("00_setup_and_data", "ok"), ("50_anomalyclip", "ok"),
                                        ("80_compare_methods", "failed")]):
        art = run_dir / stem
        art.mkdir(parents=True)
        nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source":
                         f"# {stem} · a lesson about {EVIL}\n\nIn this notebook you will learn:\n"
                         f"- how {EVIL} is scored;\n- why it matters."}],
              "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
        (run_dir / f"{stem}.ipynb").write_text(json.dumps(nb))
        (run_dir / f"{stem}.html").write_text("<html><body>executed</body></html>")
        fig, ax = plt.subplots(figsize=(4, 2))
        ax.plot([0, 1], [k, 1 - k])
        fig.savefig(art / f"figure {k}.png", dpi=60)
        plt.close(fig)
        (art / "metrics.json").write_text(json.dumps({"frame_auc": 0.5 + k / 10, EVIL: 1.0,
                                                      "profile": "tiny", "meaningless": True}))
        (art / f"{EVIL}.csv").write_text("a,b\n1,2\n")
        r = {"notebook": stem, "executed": str(run_dir / f"{stem}.ipynb"),
             "html": str(run_dir / f"{stem}.html"), "status": status, "seconds": 12.5 * (k + 1)}
        if status == "failed":
            r["error"] = f"cell 7: ValueError: bad class {EVIL}"
        results.append(r)
    wide = ",".join(f"auc class {i}" for i in range(25))
    (run_dir / "80_compare_methods" / "leaderboard.csv").write_text(
        f"method,status,profile,videos,frame_auc,frame_ap,seconds,meaningless,note,{wide}\n"
        f"classical,ok,none,8,0.61,0.4,3.2,False,,{','.join(['0.5'] * 25)}\n"
        f"{EVIL},ok,tiny,8,0.5,0.3,9.9,True,tiny,{','.join(['0.5'] * 25)}\n")
    return results


def check_index_in_browser(browser, url: str, screenshot: Path) -> dict:
    """Open the index at 1400 px: no script runs, no horizontal scroll, every link resolves."""
    page = browser.new_page()
    page.set_viewport_size({"width": 1400, "height": 1000})
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(url, wait_until="load", timeout=30_000)
    page.wait_for_timeout(300)
    widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    links = page.evaluate("[...document.querySelectorAll('a[href]')].map(a => a.href)")
    images = page.evaluate("[...document.querySelectorAll('img')].map(i => [i.src, i.naturalWidth])")
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(screenshot), full_page=True)
    broken = [u for u in links + [s for s, _ in images] if u.startswith("http://127.0.0.1")
              and not page.request.get(u).ok]
    injected = page.evaluate("document.querySelectorAll('img[src=\"x\"], img[onerror]').length")
    page.close()
    return {"dialogs": dialogs, "widths": widths, "links": links, "images": images,
            "broken": broken, "injected": injected}


@pytest.fixture
def served(tmp_path):
    """A local HTTP server (127.0.0.1) over a folder; yields (folder, base url)."""
    import functools
    import http.server
    import threading

    folder = tmp_path / "run"
    folder.mkdir()
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args, **kwargs):  # noqa: D401 - keep the test output clean
            pass

    handler = functools.partial(Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_main_job_index_reads_well_and_runs_no_injected_script(served, browser):
    sys.path.insert(0, str(REPO / "scripts"))
    import run_notebooks

    folder, base = served
    results = _fake_run(folder)
    run_notebooks._write_index(folder, results, {"PROFILE": "tiny"})
    seen = check_index_in_browser(browser, f"{base}/index.html", ARTIFACTS / "index.png")
    assert seen["dialogs"] == [] and seen["injected"] == 0, seen
    assert seen["widths"][0] <= seen["widths"][1], f"horizontal scroll at 1400 px: {seen['widths']}"
    assert not seen["broken"], seen["broken"]
    assert len(seen["images"]) == 3 and all(w > 0 for _, w in seen["images"]), seen["images"]
    assert any(u.endswith("00_setup_and_data.html") for u in seen["links"])
    assert any("leaderboard.csv" in u for u in seen["links"])
    text = (folder / "index.html").read_text()
    assert "auc class 3" not in text  # the sparse per-class columns stay in the CSV
