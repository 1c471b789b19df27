"""JupyterLab in a real browser: `make lab` in headless Chromium, driven by selenium.

Opens 01_train.ipynb and 06_tokens.ipynb, runs all cells with the smoke profile, and checks
that no cell shows an error, that figures render and that the token explorer widget renders;
then idles past an autosave (shortened to AUTOSAVE_S), saves without an edit and checks that
`git status` is as it was before JupyterLab started (the .ipynb twins are git-ignored working
copies); then opens a .py twin (it must open as a notebook), edits and saves it, and checks
that its .ipynb twin follows. A screenshot of each step goes to .ci/artifacts/browser/ (git-ignored).
Needs Debian's chromium and chromium-driver and selenium (dev extra); `make test-browser`.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from linguistic_collapse.series.sources import NOTEBOOK_METADATA

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]  # this checkout
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"

SHOTS = REPO_ROOT / ".ci" / "artifacts" / "browser"
RUN_TIMEOUT_S = 600.0  # 01_train trains the smoke grid when data/smoke has no models yet
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1400,1000")
SCRATCH = "browser_check"  # a twin pair this test creates in notebooks/ and removes
AUTOSAVE_S = 5  # the test's Lab autosave interval (JupyterLab's default is 120 s)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def git_state() -> dict[str, bytes | None]:
    """``git status --porcelain`` of the checkout, each listed file with its bytes: equal
    states mean the session changed no tracked file and left no new untracked one."""
    out = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain",
                          "--untracked-files=all"], capture_output=True, text=True, check=True)
    state = {}
    for line in out.stdout.splitlines():
        path = REPO_ROOT / line[3:].split(" -> ")[-1]
        state[line] = path.read_bytes() if path.is_file() else None
    return state


@pytest.fixture(scope="module")
def untouched_sources() -> Iterator[dict]:
    """The checkout's git state before JupyterLab starts; after the module, the tracked notebook
    sources must be as they were (a changed one is put back and the test fails)."""
    before = git_state()
    sources = {p: p.read_bytes() for p in NOTEBOOKS_DIR.glob("[0-9][0-9]_*.py")}
    yield before
    changed = [p for p, data in sources.items() if p.read_bytes() != data]
    for p in changed:
        p.write_bytes(sources[p])
    assert not changed, f"JupyterLab rewrote {[p.name for p in changed]} (restored)"


@pytest.fixture(scope="module")
def lab(tmp_path_factory, untouched_sources) -> Iterator[str]:
    """JupyterLab started by `make lab` (the flags a headless server needs via ARGS)."""
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    pytest.importorskip("selenium", reason="needs selenium (pip install -e '.[dev]')")
    port, token = _free_port(), secrets.token_hex(16)
    home = tmp_path_factory.mktemp("lab")
    log = home / "lab.log"
    # the test's own user settings and workspaces (never ~/.jupyter): autosave on, every
    # AUTOSAVE_S seconds (outputs go to the git-ignored .ipynb twins), and no news pop-up
    settings = home / "user-settings"
    for plugin, values in {"docmanager-extension/plugin": {"autosave": True,
                                                           "autosaveInterval": AUTOSAVE_S},
                           "apputils-extension/notification": {"fetchNews": "false"}}.items():
        path = settings / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values), encoding="utf-8")
    args = (f"--no-browser --allow-root --ServerApp.ip=127.0.0.1 --ServerApp.port={port} "
            f"--IdentityProvider.token={token} --LabApp.expose_app_in_browser=True "
            f"--LabApp.user_settings_dir={settings} --LabApp.workspaces_dir={home / 'workspaces'}")
    with open(log, "wb") as out:
        # -o: the environment is already set up (`make test-browser` depends on `setup`)
        proc = subprocess.Popen(["make", "--no-print-directory", "-o", ".venv/.installed", "lab",
                                 f"ARGS={args}"], cwd=REPO_ROOT,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"`make lab` did not start:\n{log.read_text(errors='replace')[-3000:]}")
                time.sleep(1)
        yield f"{base}|{token}"
    finally:
        _stop(proc)
        SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(log, SHOTS / "lab.log")


def _stop(proc: subprocess.Popen) -> None:
    """End the server and its kernels (their own process group, started for this test)."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def browser(lab, tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    # a headless window never has the focus, and JupyterLab tracks its current document by
    # focus: emulate a focused page, or the shell's current widget stays unset
    driver.execute_cdp_cmd("Emulation.setFocusEmulationEnabled", {"enabled": True})
    driver.set_script_timeout(RUN_TIMEOUT_S)
    yield driver
    driver.quit()


def _shot(driver, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def _open(driver, lab: str, path: str) -> None:
    base, token = lab.split("|")
    driver.get(f"{base}/lab/tree/{path}?token={token}")
    try:
        _wait(driver, _CURRENT, 120, path)
        _wait(driver, _KERNEL_IDLE, 120)
    except AssertionError as err:
        _shot(driver, f"failed_to_open_{Path(path).stem}")
        seen = driver.execute_script("""const a = window.jupyterapp, w = a && a.shell.currentWidget;
            return {app: !!a, current: w ? w.constructor.name : null,
                    path: w && w.context ? w.context.path : null,
                    notebook: !!(w && w.node.querySelector('.jp-Notebook')),
                    kernel: w && w.sessionContext && w.sessionContext.session
                            && w.sessionContext.session.kernel
                            ? w.sessionContext.session.kernel.status : null,
                    main: a ? [...a.shell.widgets('main')].map(x => x.title.label) : []};""")
        raise AssertionError(f"{err}; the page shows {seen}") from None


# the document at arguments[0] is open and current; a headless window may have no focus, so the
# shell's current widget can stay unset: the test activates the document's tab itself
_CURRENT = """
const a = window.jupyterapp;
if (!a) return false;
const here = w => !!(w && w.context && w.context.path === arguments[0]);
if (!here(a.shell.currentWidget)) {
  const tab = [...a.shell.widgets('main')].find(here);
  if (tab) { window.focus(); a.shell.activateById(tab.id); }
}
const w = a.shell.currentWidget;
return here(w) && w.node.querySelector('.jp-Notebook') !== null;"""
# an error output, and anything written to stderr
_ERRORS = ('[data-mime-type="application/vnd.jupyter.error"], '
           '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
_IN_NOTEBOOK = """
const q = s => [...window.jupyterapp.shell.currentWidget.node.querySelectorAll(s)];"""
_KERNEL_IDLE = """
const w = window.jupyterapp.shell.currentWidget;
return !!(w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel
          && w.sessionContext.session.kernel.status === 'idle');"""


def _wait(driver, script: str, timeout: float, *args: object) -> None:
    deadline = time.monotonic() + timeout
    while not driver.execute_script(script, *args):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for: {script.strip()[:120]}")
        time.sleep(1)


def _run_all(driver) -> dict:
    """Run All Cells (the Run menu's command), wait until every code cell ran or one failed;
    return what the open notebook shows (its own tab only: other tabs stay in the page)."""
    driver.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells');")
    _wait(driver, _IN_NOTEBOOK + """
        const prompts = q('.jp-CodeCell .jp-InputPrompt');
        return q(arguments[0]).length > 0
               || (prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent)));""",
          RUN_TIMEOUT_S, _ERRORS)
    _wait(driver, _KERNEL_IDLE, 60)
    return driver.execute_script(_IN_NOTEBOOK + """
        return {
          cells: q('.jp-CodeCell').length,
          errors: q(arguments[0]).map(e => e.textContent.slice(0, 300)),
          images: q('.jp-RenderedImage img').filter(i => i.complete && i.naturalWidth > 0).length,
          widgets: q('.jp-OutputArea-output .widget-dropdown select').length,
        };""", _ERRORS)


def test_file_browser_opens_on_notebooks(browser, lab):
    base, token = lab.split("|")
    browser.get(f"{base}/lab?token={token}")  # the server's default page, as `make lab` opens it
    browser.get(f"{base}/lab/tree/notebooks?token={token}")
    _wait(browser, """return [...document.querySelectorAll('.jp-DirListing-itemText')]
                        .some(e => e.textContent.trim() === '01_train.ipynb');""", 120)
    _shot(browser, "01_file_browser")


def test_01_train_runs_with_a_figure_and_no_error(browser, lab):
    _open(browser, lab, "notebooks/01_train.ipynb")
    _shot(browser, "02_train_opened")
    summary = _run_all(browser)
    _shot(browser, "03_train_ran")
    assert summary["errors"] == [], summary["errors"]
    assert summary["images"] >= 3, summary


def test_06_tokens_renders_the_explorer_widget(browser, lab):
    from linguistic_collapse.core import names
    from linguistic_collapse.core.profiles import load_profile
    from linguistic_collapse.pipeline import jobs

    profile = load_profile("smoke")  # 06 reads the largest model's statistics (02_collect's job)
    ck = names.largest(profile.checkpoints())
    if not jobs.is_collected(profile, ck):
        jobs.collect_checkpoint(profile, ck, jobs.prepare_profile_corpus(profile, progress=False),
                                    progress=False)
    _open(browser, lab, "notebooks/06_tokens.ipynb")
    summary = _run_all(browser)
    browser.execute_script("""document.querySelector('.jp-OutputArea-output .widget-dropdown')
                               .scrollIntoView();""")
    _shot(browser, "04_tokens_explorer")
    assert summary["errors"] == [], summary["errors"]
    assert summary["images"] >= 1 and summary["widgets"] >= 1, summary


def test_a_session_leaves_git_status_as_it_was(browser, lab, untouched_sources):
    """Opened, run, idle past an autosave, saved without an edit: no tracked
    file changed and no untracked one appeared."""
    _open(browser, lab, "notebooks/01_train.ipynb")
    summary = _run_all(browser)  # run here, not relying on an earlier test's tab
    assert summary["errors"] == [], summary["errors"]
    time.sleep(3 * AUTOSAVE_S)  # idle past autosave
    browser.execute_script("return window.jupyterapp.commands.execute('docmanager:save');")
    _wait(browser, """const w = window.jupyterapp.shell.currentWidget;
                      return !!(w && w.context && !w.context.model.dirty);""", 60)
    time.sleep(2)  # jupytext writes the .py twin after the .ipynb
    _shot(browser, "05_saved_without_edits")
    after = git_state()
    changed = sorted({line for line, _ in set(after.items()) ^ set(untouched_sources.items())})
    assert after == untouched_sources, f"a JupyterLab session changed the checkout: {changed}"
    deadline = time.monotonic() + 60  # the save reaches the disk after the model is clean
    while not (saved := _saved_outputs()) and time.monotonic() < deadline:
        time.sleep(1)
    assert saved, "the run's outputs were not saved"


def _saved_outputs() -> bool:
    """Whether the working copy of 01_train on disk holds outputs (a save of the run reached it)."""
    try:
        cells = json.loads((NOTEBOOKS_DIR / "01_train.ipynb").read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError):  # mid-write
        return False
    return any(c.get("outputs") for c in cells)


@pytest.fixture
def scratch_twin() -> Iterator[Path]:
    source = NOTEBOOKS_DIR / f"{SCRATCH}.py"
    for suffix in (".py", ".ipynb"):  # a pair as committed: the .ipynb holds the kernel's name
        shutil.copy(NOTEBOOKS_DIR / f"01_train{suffix}", source.with_suffix(suffix))
    yield source
    for path in (source, source.with_suffix(".ipynb")):
        path.unlink(missing_ok=True)


def test_a_py_twin_opens_as_a_notebook_and_saving_it_updates_the_ipynb(browser, lab, scratch_twin):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    _open(browser, lab, f"notebooks/{scratch_twin.name}")  # a notebook view, not a text editor
    _shot(browser, "06_py_twin_opened")
    line = browser.execute_script(_IN_NOTEBOOK + "return q('.jp-CodeCell .cm-line')[0];")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", line)
    ActionChains(browser).click(line).send_keys(Keys.END, "  # edited in the browser").perform()
    browser.execute_script("return window.jupyterapp.commands.execute('docmanager:save');")
    notebook = scratch_twin.with_suffix(".ipynb")
    deadline = time.monotonic() + 60
    while "edited in the browser" not in notebook.read_text(encoding="utf-8"):
        assert time.monotonic() < deadline, f"saving {scratch_twin.name} did not update {notebook.name}"
        time.sleep(1)
    _shot(browser, "07_py_twin_saved")
    assert "edited in the browser" in scratch_twin.read_text(encoding="utf-8")
    meta = json.loads(notebook.read_text(encoding="utf-8"))["metadata"]
    assert meta["kernelspec"]["display_name"] == NOTEBOOK_METADATA["kernelspec"]["display_name"]
