"""Notebook 04 in a real browser: JupyterLab + headless Chromium, Run All, move the slider.

This proves what a kernel-only run (nbval) cannot: the explorer renders in JupyterLab, and
mouse and keyboard events on each of its controls (the sparsity slider, both criteria, the
fine-tune toggle) reach the kernel, and the readout and pictures answer, each changing what
that control should change and nothing else. A screenshot after each action is saved in
``artifacts/browser/``. A second test checks
that Binder's JupyterLab settings open a jupytext ``.py`` notebook as a notebook.

Needs Debian's ``chromium`` (``apt-get install chromium``) and the ``playwright`` package
(dev extra); never ``playwright install``. Without either, the test is skipped and says why.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "04_mnist_evaluation.ipynb"
ARTIFACTS = ROOT / "artifacts" / "browser"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Chromium otherwise keeps calling outside hosts, which CI machines refuse.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# JupyterLab settings for a clean, deterministic page: every cell in the DOM, no autosave
# into the copied notebook, no "news" toast covering the widgets.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"},
}
SERVER_START_S = 60
RUN_ALL_S = 240  # all of notebook 04 (six 1-epoch fine-tunings; the sweep is read from a file)
WIDGET_ANSWER_S = 90  # a new criterion scores 3 draws and evaluates 9 levels each

pytestmark = pytest.mark.browser


def require_browser():
    """Skip, saying what is missing, unless Playwright and a Chromium binary are both here."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright is not installed: pip install -e '.[dev]'")
    if not Path(CHROMIUM).is_file():
        pytest.skip("no chromium binary: apt-get install -y chromium (Debian's package)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def api(url: str, method: str = "GET") -> object:
    request = urllib.request.Request(url, method=method)
    with urllib.request.urlopen(request, timeout=5) as response:
        body = response.read()
    return json.loads(body) if body else None


@contextmanager
def jupyter_lab(root_dir: Path, config_dir: Path, extra_args: tuple[str, ...] = ()):
    """Run JupyterLab on 127.0.0.1 with a random port and token; yield (base_url, token).

    The server runs in its own process group and is shut down through its API (which also
    stops its kernels), or killed if it does not stop.
    """
    port, token = free_port(), secrets.token_hex(16)
    for name, values in LAB_SETTINGS.items():
        path = config_dir / "lab" / "user-settings" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    log = open(config_dir / "jupyter.log", "w")  # noqa: SIM115 - closed below
    environment = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(config_dir),
        "JUPYTER_RUNTIME_DIR": str(config_dir / "runtime"),
        "MPLBACKEND": "Agg",
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            "--no-browser",
            "--allow-root",  # CI runs as root; jupyter refuses otherwise (and says so only in its log)
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root_dir}",
            *extra_args,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=environment,
        start_new_session=True,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if server.poll() is not None:
                pytest.fail(
                    f"jupyter lab exited early:\n{(config_dir / 'jupyter.log').read_text()}"
                )
            try:
                api(f"{base_url}/api/status?token={token}")
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    pytest.fail(f"jupyter lab did not answer in {SERVER_START_S} s")
                time.sleep(0.2)  # polling the real condition: the server's status answering
        yield base_url, token
    finally:
        try:
            api(f"{base_url}/api/shutdown?token={token}", method="POST")
            server.wait(timeout=20)
        except (OSError, urllib.error.URLError, subprocess.TimeoutExpired):
            os.killpg(server.pid, 9)
            server.wait(timeout=10)
        log.close()


# True when Run All has finished: the kernel is idle and no cell is still queued ("[*]").
RUN_FINISHED = """() => {
    const indicator = document.querySelector('.jp-Notebook-ExecutionIndicator');
    const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')];
    return indicator !== null && indicator.dataset.status === 'idle'
        && !prompts.some(p => p.textContent.includes('*'));
}"""
# True once any code cell has been queued or run since the outputs were cleared.
RUN_STARTED = """() => [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')]
    .some(p => /\\[(\\*|\\d+)\\]/.test(p.textContent))"""
UNRUN_CELLS = """() => [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')]
    .filter(p => !/\\[\\d+\\]/.test(p.textContent)).length"""
# The explorer's parts: each picture by its CSS class, and the readout's rows as text.
PICTURES = {"curve": "gp-curve-image", "masks": "gp-mask-image", "layers": "gp-layer-bars"}
# {row A, row B, overlap row, each picture's src}: what the page shows now.
WIDGET_STATE = """() => {
    const readout = document.querySelector('.gp-readout');
    const rows = readout ? readout.innerHTML.split('<br>').map(
        r => r.replace(/<[^>]+>/g, '').trim()) : [null, null, null];
    const state = {A: rows[0], B: rows[1], overlap: rows[2]};
    for (const [key, css] of Object.entries(PICTURES_JSON)) {
        const image = document.querySelector(`img.${css}, .${css} img`);
        state[key] = image ? image.getAttribute('src') : null;
    }
    return state;
}""".replace("PICTURES_JSON", json.dumps(PICTURES))
# sha256 of the bytes behind each picture (a blob: or data: URL), so that a new picture,
# not merely a new URL for the same bytes, is what the test sees.
PICTURE_DIGESTS = """async (pictures) => {
    const digests = {};
    for (const [key, css] of Object.entries(pictures)) {
        const image = document.querySelector(`img.${css}, .${css} img`);
        const bytes = await (await fetch(image.src)).arrayBuffer();
        const digest = await crypto.subtle.digest('SHA-256', bytes);
        digests[key] = [...new Uint8Array(digest)]
            .map(b => b.toString(16).padStart(2, '0')).join('');
    }
    return digests;
}"""


def click_menu(page, menu: str, command: str):
    """Open a top-level JupyterLab menu and click the entry bound to ``command``."""
    page.locator(".lm-MenuBar-item", has_text=menu).first.click()
    page.locator(f'.lm-Menu-item[data-command="{command}"]').click()


def run_all(page):
    """Clear outputs, Run All Cells, and wait for the kernel to finish; fail on an error."""
    page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=60_000)
    # Menu commands act on the focused document; a fresh page has the file browser focused.
    page.locator(".jp-Notebook .jp-InputPrompt").first.click()
    click_menu(page, "Edit", "editmenu:clear-all")
    click_menu(page, "Run", "runmenu:run-all")
    page.wait_for_function(RUN_STARTED, timeout=30_000)
    page.wait_for_function(RUN_FINISHED, timeout=RUN_ALL_S * 1000, polling=250)
    unrun = page.evaluate(UNRUN_CELLS)
    if unrun:
        errors = page.locator(".jp-OutputArea-output[data-mime-type*='stderr']").all_inner_texts()
        pytest.fail(f"{unrun} cells did not run; the notebook stopped on:\n" + "\n".join(errors))


def widget_state(page) -> dict:
    """The readout's rows (A, B, overlap), and each picture's src and sha256 (``<key>#``)."""
    state = page.evaluate(WIDGET_STATE)
    digests = page.evaluate(PICTURE_DIGESTS, PICTURES)
    return {**state, **{f"{key}#": digest for key, digest in digests.items()}}


def answer(page, before: dict, must_change: tuple[str, ...]) -> dict:
    """Wait until the kernel is idle and every key in ``must_change`` (readout rows or
    picture srcs) differs from ``before``; return the new state."""
    page.wait_for_function(
        f"""() => {{
            const now = ({WIDGET_STATE})();
            const before = {json.dumps(before)};
            const idle = document.querySelector(
                '.jp-Notebook-ExecutionIndicator[data-status="idle"]') !== null;
            return idle && {json.dumps(list(must_change))}.every(k => now[k] !== before[k]);
        }}""",
        timeout=WIDGET_ANSWER_S * 1000,
    )
    return widget_state(page)


def centre(page, css_class: str):
    """The first element of ``css_class``, scrolled to the middle of the window (so that no
    toolbar or sticky cell header lies over it)."""
    element = page.locator(f".{css_class}").first
    element.evaluate("e => e.scrollIntoView({block: 'center'})")
    return element


def move_slider(page, fraction: float):
    """Drag the sparsity slider's handle with the mouse to ``fraction`` of its track."""
    slider = centre(page, "gp-sparsity")
    track = slider.locator(".noUi-target").first.bounding_box()
    handle = slider.locator(".noUi-handle").first.bounding_box()
    page.mouse.move(handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2)
    page.mouse.down()
    # One move event: one new value reaches the kernel, so the outputs we wait for are final.
    page.mouse.move(track["x"] + fraction * track["width"], track["y"] + track["height"] / 2)
    page.mouse.up()


def choose(page, css_class: str, criterion: str):
    """Pick ``criterion`` in the dropdown of ``css_class``, as a user's click would."""
    centre(page, css_class).locator("select").select_option(criterion)


def drive_notebook(notebooks: Path, name: str, workdir: Path, artifacts: Path) -> dict:
    """Open ``notebooks/name`` (copied into ``workdir``) in JupyterLab, run it, then drive
    every control of the explorer with mouse and keyboard events: the slider to 20% and 90%
    of its track, criterion B, the fine-tune toggle, criterion A. Save a screenshot after
    each action; return the widget state (``widget_state``) before and after each one."""
    from playwright.sync_api import sync_playwright

    shutil.copytree(notebooks, workdir / "notebooks", ignore=shutil.ignore_patterns(".ipynb_*"))
    artifacts.mkdir(parents=True, exist_ok=True)
    everything = ("A", "B", "overlap", *PICTURES)
    steps = [  # (name, action, what it must change before the test looks)
        ("slider_low", lambda page: move_slider(page, 0.2), everything),
        ("slider_high", lambda page: move_slider(page, 0.9), everything),
        ("criterion_b", lambda page: choose(page, "gp-criterion-b", "random"),
         ("B", "overlap", *PICTURES)),
        ("finetune", lambda page: centre(page, "gp-finetune").click(), ("A", "B", "curve")),
        ("criterion_a", lambda page: choose(page, "gp-criterion-a", "fisher"),
         ("A", "overlap", *PICTURES)),
    ]  # fmt: skip
    states = {}
    with jupyter_lab(workdir, workdir / "jupyter-config") as (base_url, token):
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(f"{base_url}/lab/tree/notebooks/{name}?token={token}")
                run_all(page)
                page.wait_for_selector(".gp-sparsity", timeout=WIDGET_ANSWER_S * 1000)
                states["start"] = widget_state(page)
                for step, act, must_change in steps:
                    before = list(states.values())[-1]
                    act(page)
                    states[step] = answer(page, before, must_change)
                    page.screenshot(path=str(artifacts / f"{step}.png"))
            except Exception:
                page.screenshot(path=str(artifacts / "failure.png"))  # what the page showed
                raise
            finally:
                browser.close()
    return states


def test_notebook_04_every_explorer_control_changes_what_it_should(tmp_path):
    require_browser()
    if not (ROOT / "notebooks" / NOTEBOOK).is_file():
        pytest.fail(f"notebooks/{NOTEBOOK} is missing")
    states = drive_notebook(ROOT / "notebooks", NOTEBOOK, tmp_path, ARTIFACTS)
    start = states["start"]
    assert start["A"] and start["B"] and start["overlap"], "the readout did not render"
    assert all(start[key] for key in PICTURES), "a picture did not render"
    pictures = [f"{key}#" for key in PICTURES]

    def changed(step, previous):
        return {k for k in ("A", "B", "overlap", *pictures) if states[step][k] != previous[k]}

    # The slider moves everything: both rows, the overlap, the cursor, masks and layer bars.
    assert changed("slider_low", start) == {"A", "B", "overlap", *pictures}
    assert changed("slider_high", states["slider_low"]) == {"A", "B", "overlap", *pictures}
    # Criterion B: its row, the overlap and every picture; A's row stays.
    assert "B: random" in states["criterion_b"]["B"]
    assert changed("criterion_b", states["slider_high"]) == {"B", "overlap", *pictures}
    # Fine-tuning: both rows and the curve (its starred points); masks and bars stay.
    assert "+ fine-tune" in states["finetune"]["A"] and "+ fine-tune" in states["finetune"]["B"]
    assert changed("finetune", states["criterion_b"]) == {"A", "B", "curve#"}
    # Criterion A: its row, the overlap and every picture; B's row stays.
    assert "A: fisher" in states["criterion_a"]["A"]
    assert changed("criterion_a", states["finetune"]) == {"A", "overlap", *pictures}
    for step in ("slider_low", "slider_high", "criterion_b", "finetune", "criterion_a"):
        assert (ARTIFACTS / f"{step}.png").stat().st_size > 10_000


def test_binder_settings_open_py_notebooks_as_notebooks(tmp_path):
    # binder/postBuild installs binder/overrides.json as JupyterLab's overrides; here the same
    # file is served the same way, and a jupytext .py notebook must open as a notebook.
    require_browser()
    from playwright.sync_api import sync_playwright

    settings = tmp_path / "app-settings"
    settings.mkdir()
    shutil.copyfile(ROOT / "binder" / "overrides.json", settings / "overrides.json")
    shutil.copytree(
        ROOT / "notebooks", tmp_path / "notebooks", ignore=shutil.ignore_patterns(".ipynb_*")
    )
    lab = jupyter_lab(
        tmp_path, tmp_path / "jupyter-config", (f"--LabApp.app_settings_dir={settings}",)
    )
    with lab as (base_url, token), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{base_url}/lab/tree/notebooks/01_gradient_decomposition.py?token={token}")
            # Whichever viewer JupyterLab picks shows up: a notebook's cells or a text editor.
            page.wait_for_selector(".jp-NotebookPanel .jp-Cell, .jp-FileEditor", timeout=60_000)
            assert page.locator(".jp-FileEditor:visible").count() == 0, "opened as plain text"
            # Its cells, markdown and code, are there as cells (a second code cell, not one blob).
            page.locator(".jp-NotebookPanel .jp-MarkdownCell").first.wait_for(timeout=30_000)
            page.locator(".jp-NotebookPanel .jp-CodeCell").nth(1).wait_for(timeout=30_000)
        finally:
            browser.close()
