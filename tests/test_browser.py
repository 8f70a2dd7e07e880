"""The playground notebook in a real browser: JupyterLab, headless Chromium, Train, live plots, Stop.

The fixture starts JupyterLab on 127.0.0.1 with a token; Playwright drives Debian's Chromium
(``/usr/bin/chromium``, installed by ``make browser``). The screenshot, the timings and the server
log go to ``artifacts/browser/``. Without Chromium the test is skipped, unless the environment
variable ``CI`` is set: continuous integration must run it, so there it fails.
"""

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
PLAYGROUND = NOTEBOOKS / "02_playground.ipynb"
ARTIFACTS = ROOT / "artifacts" / "browser"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # the tests run as root, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SERVER_START_TIMEOUT_S = 90
EPOCHS_TYPED = 50  # long enough that Stop lands while training runs, even on a fast machine

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def _require(condition: bool, reason: str) -> None:
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so the browser test must run)")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _server_ready(url: str, token: str) -> bool:
    request = urllib.request.Request(f"{url}/api/status", headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def _lab_command(port: int, token: str, tmp_path: Path) -> list[str]:
    """Build the JupyterLab command line: loopback only, no browser, settings in ``tmp_path``."""
    settings = tmp_path / "lab-settings"
    # Autosave off, so running the notebook never writes outputs into the repository's copy.
    docmanager = settings / "@jupyterlab" / "docmanager-extension"
    docmanager.mkdir(parents=True)
    (docmanager / "plugin.jupyterlab-settings").write_text(json.dumps({"autosave": False}))
    return [
        sys.executable, "-m", "jupyterlab",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--port-retries=0",
        f"--IdentityProvider.token={token}",
        "--allow-root",
        "--no-browser",
        "--ServerApp.open_browser=False",
        f"--ServerApp.root_dir={NOTEBOOKS}",
        f"--LabApp.user_settings_dir={settings}",
        f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]


@pytest.fixture
def jupyter_lab(tmp_path):
    """Start JupyterLab on 127.0.0.1 over the notebooks folder; yield ``(url, token)``."""
    port = _free_port()
    token = secrets.token_hex(16)
    command = _lab_command(port, token, tmp_path)
    env = dict(
        os.environ,
        ALRAO_EDU_QUICK="1",
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
        JUPYTER_DATA_DIR=str(tmp_path / "data"),
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    notebook_before = PLAYGROUND.read_bytes()
    log = open(ARTIFACTS / "jupyterlab.log", "w")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while not _server_ready(url, token):
            if server.poll() is not None:
                pytest.fail(f"JupyterLab exited with code {server.returncode}; see {ARTIFACTS / 'jupyterlab.log'}")
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not answer within {SERVER_START_TIMEOUT_S} s; see {ARTIFACTS / 'jupyterlab.log'}")
            time.sleep(0.3)
        yield url, token
    finally:
        # The server and the kernels it started share one process group.
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=5)
        log.close()
    assert PLAYGROUND.read_bytes() == notebook_before, "the browser session modified the committed notebook"


# Per plotly plot, keyed by its title: the traces that drew a marker or a line of two points or more,
# and the legend entries.
PLOTS_JS = """
() => {
  const plots = {};
  for (const plot of document.querySelectorAll('.js-plotly-plot')) {
    const title = plot.querySelector('.gtitle')?.textContent ?? '';
    const drawn = [...plot.querySelectorAll('.scatterlayer .trace')].filter((trace) =>
      trace.querySelector('.points path.point') !== null ||
      [...trace.querySelectorAll('path.js-line, path.js-fill')].some((path) =>
        /[LHV]/.test(path.getAttribute('d') ?? ''))).length;
    const legend = [...plot.querySelectorAll('.legendtext')].map((text) => text.textContent);
    plots[title] = {drawn, legend};
  }
  return plots;
}
"""


def _plots_ready(plots: dict) -> bool:
    def find(prefix: str) -> dict:
        return next((plot for title, plot in plots.items() if title.startswith(prefix)), {"drawn": 0, "legend": []})

    loss = find("Loss of every run")
    legend = " ".join(loss["legend"])
    return (
        loss["drawn"] >= 3
        and "Alrao" in legend
        and "SGD" in legend
        and "Adam" in legend
        and find("Per-feature learning rates")["drawn"] >= 1
        and find("Switch posterior")["drawn"] >= 2
        and find("Test accuracy")["drawn"] >= 3  # one marker per run after the first epoch
        and find("Which features learned")["drawn"] >= 1
    )


@pytest.fixture
def sync_playwright():
    """Playwright's ``sync_playwright``, once Chromium and the package are known to be present."""
    _require(CHROMIUM.exists(), f"{CHROMIUM} is missing; install it with `make browser`")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _require(False, "the playwright package is not installed")
    return sync_playwright


def _wait_for_plots(page, timeout_s: float) -> dict:
    """Poll the page until the plots have drawn; return what they show at the end."""
    deadline = time.monotonic() + timeout_s
    plots = page.evaluate(PLOTS_JS)
    while not _plots_ready(plots) and time.monotonic() < deadline:
        page.wait_for_timeout(250)
        plots = page.evaluate(PLOTS_JS)
    return plots


# sync_playwright comes first, so a missing browser skips the test before JupyterLab starts.
def test_playground_trains_and_stops_in_browser(sync_playwright, jupyter_lab):
    url, token = jupyter_lab
    timings = {}
    started = time.monotonic()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 2600})
        try:
            page.goto(f"{url}/lab/tree/{PLAYGROUND.name}?token={token}")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
            # The status bar reads "Python 3 (ipykernel) | Idle" once the kernel has connected.
            page.locator(".jp-StatusBar-Widget", has_text="| Idle").first.wait_for(timeout=90_000)
            timings["notebook open (s)"] = time.monotonic() - started

            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
            train = page.get_by_role("button", name="Train")
            train.wait_for(state="visible", timeout=90_000)
            timings["dashboard shown (s)"] = time.monotonic() - started

            epochs = page.locator(".widget-inline-hbox", has=page.locator("label", has_text="epochs")).locator("input")
            epochs.fill(str(EPOCHS_TYPED))
            epochs.press("Enter")
            train.click()
            plots = _wait_for_plots(page, timeout_s=120)
            timings["plots drawn (s)"] = time.monotonic() - started

            page.get_by_role("button", name="Stop").click()
            stopped = page.locator(".widget-html-content", has_text="Stopped after step")
            stopped.wait_for(state="visible", timeout=30_000)
            status = stopped.inner_text()
            timings["stopped (s)"] = time.monotonic() - started
            page.screenshot(path=str(ARTIFACTS / "playground.png"), full_page=True)
            outputs = page.locator(".jp-OutputArea-output").all_inner_texts()
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "failure.png"), full_page=True)
            raise
        finally:
            browser.close()

    (ARTIFACTS / "timings.json").write_text(json.dumps(timings, indent=2))
    assert _plots_ready(plots), plots
    stopped_at = re.match(r"Stopped after step (\d+) of (\d+)\.", status)
    assert stopped_at is not None, status
    step, total = int(stopped_at[1]), int(stopped_at[2])
    assert total % EPOCHS_TYPED == 0, f"the typed epochs did not reach the kernel: {status}"
    assert 0 < step < total
    assert not any("Traceback" in text for text in outputs), outputs
