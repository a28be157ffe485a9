"""A real browser for the notebook tests: JupyterLab started from this venv, headless Chromium (Debian's
``chromium`` and ``chromium-driver`` packages) driven by Selenium. See ``../shared/design/browser-tests.md``."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rlhf_helpers.core.artifacts import REPO_ROOT

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
TOKEN = "rlhf-course-test"


def available() -> bool:
    return all(Path(p).exists() for p in (CHROMIUM, CHROMEDRIVER))


def poll(get: Callable[[], Any], ok: Callable[[Any], bool], timeout: float = 60.0, every: float = 0.25) -> Any:
    """``get()`` until ``ok`` of it (returns it) or ``timeout`` seconds (returns the last value)."""
    end = time.monotonic() + timeout
    value = get()
    while not ok(value) and time.monotonic() < end:
        time.sleep(every)
        value = get()
    return value


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def lab(workdir: Path, env: dict[str, str]) -> Iterator[tuple[Any, str]]:
    """JupyterLab on the repository root (kernels get ``env``), and a headless Chromium: ``(driver, base url)``.
    Both are stopped at the end, by their process ids."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    port = _free_port()
    dirs = {k: workdir / k.lower() for k in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    # user settings: no autosave (the executed notebook must not be written over the stored one), no news pop-up
    settings = workdir / "lab-settings"
    for plugin, value in (("docmanager-extension/plugin", {"autosave": False}),
                          ("apputils-extension/notification", {"fetchNews": "false"})):
        path = settings / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))
    server_env = os.environ | env | {k: str(v) for k, v in dirs.items()} | {
        "JUPYTER_PATH": str(Path(sys.prefix) / "share" / "jupyter"), "JUPYTERLAB_SETTINGS_DIR": str(settings)}
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={REPO_ROOT}", "--LabApp.expose_app_in_browser=True"],
        env=server_env, stdout=subprocess.DEVNULL, stderr=open(workdir / "lab.log", "w"))  # noqa: SIM115
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--window-size=1400,1100", "--disable-gpu",
                f"--user-data-dir={workdir / 'chromium'}"):
        options.add_argument(arg)
    driver = None
    try:
        url = f"http://127.0.0.1:{port}"
        poll(lambda: _reachable(port), bool, timeout=60)
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        yield driver, url
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(workdir / "chromium", ignore_errors=True)


def _reachable(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _state(driver: Any) -> dict[str, Any]:
    """The open notebook's kernel status and its code cells' execution counts (JupyterLab's app in the page)."""
    return driver.execute_script("""
        const app = window.jupyterapp; const w = app && app.shell.currentWidget;
        if (!w || !w.content || !w.sessionContext || !w.sessionContext.session) return {ready: false};
        const cells = [];
        const model = w.content.model;
        for (let i = 0; i < model.cells.length; i++) {
            const c = model.cells.get(i); if (c.type === 'code') cells.push(c.executionCount);
        }
        return {ready: true, status: w.sessionContext.session.kernel.status, counts: cells};""")


def run_all(driver: Any, url: str, timeout: float = 300) -> None:
    """Open the notebook at ``url``, wait for its kernel, run every cell, wait until each has run and the kernel is
    idle again; an error output fails with its text."""
    driver.get(f"{url}?reset&token={TOKEN}")
    state = poll(lambda: _state(driver), lambda s: s.get("ready") and s.get("status") == "idle", timeout=90)
    assert state.get("status") == "idle", f"the kernel did not start: {state}"
    driver.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    state = poll(lambda: _state(driver), lambda s: s.get("status") == "idle" and all(s.get("counts") or [None]),
                 timeout=timeout, every=1.0)
    errors = driver.execute_script(
        "return Array.from(document.querySelectorAll('.jp-OutputArea-output[data-mime-type=\"application/"
        "vnd.jupyter.stderr\"]')).map(e => e.innerText).filter(t => t.includes('Error'))")
    assert all(state.get("counts") or [None]) and not errors, (state, errors)


def wait_for(driver: Any, css: str, timeout: float = 30) -> Any:
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    element = WebDriverWait(driver, timeout).until(ec.visibility_of_element_located(("css selector", css)))
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    return element


def _progress(widget: Any) -> str:
    return widget.text.split(" labelled")[0]


def click_button(driver: Any, widget: Any, text: str) -> None:
    """A mouse click on the widget's button ``text``; waits for the widget to show the next pair."""
    from selenium.webdriver.common.action_chains import ActionChains

    before = _progress(widget)
    button = widget.find_element("xpath", f".//button[normalize-space()='{text}']")
    ActionChains(driver).move_to_element(button).click().perform()
    poll(lambda: _progress(widget), lambda p: p != before, timeout=20)


def press_keys(driver: Any, widget: Any, keys: list[str]) -> None:
    """With the mouse over the widget (ipyevents focuses it), press each key; waits for each to register."""
    from selenium.webdriver.common.action_chains import ActionChains

    for key in keys:
        before = _progress(widget)
        ActionChains(driver).move_to_element(widget).send_keys(key).perform()
        poll(lambda: _progress(widget), lambda p, before=before: p != before, timeout=20)
