"""The lessons in a real browser: JupyterLab + headless Chromium (driven by Playwright).

What nbval cannot see, this does: the front end.  For a few lessons that display widgets
(DEFAULT_LESSONS; ``KVMLAB_BROWSER_LESSONS=widgets`` runs every lesson that displays
widgets, ``all`` every lesson, ``00,05`` those two) the test opens the notebook in
JupyterLab, runs *Run > Run All Cells* from the menu bar, waits until every code cell has
run and the kernel is idle, saves the notebook (a temporary copy), and checks that

* every code cell ran and none raised (no traceback in any output),
* every widget output rendered as a widget view: as many views in the page as the saved
  notebook holds widget outputs (``application/vnd.jupyter.widget-view+json``), none of
  them "Error displaying widget" (what a mismatch between ``ipywidgets`` and
  ``jupyterlab_widgets`` looks like) or "Loading widget..." (no widget manager);

and with ``tests/data/live_view.ipynb`` that a live view moves while a guest runs in a
background thread (the exit count of an :class:`ExitMonitor` grows between two
screenshots).  Screenshots go to ``test-artifacts/screenshots/`` (gitignored).

The server runs on 127.0.0.1 on a free port with a token, with temporary runtime, config
and data directories (a fresh workspace, autosave off) and serves *copies* of the
notebooks (in a ``notebooks/`` directory beside a link to ``guests/``, as in the
repository), so nothing in the repository is written.  The browser is the system's Chromium
(``/usr/bin/chromium``, or ``$KVMLAB_CHROMIUM``); Playwright never downloads one.  Without
Chromium (a developer without root) the tests skip and say how to install it; CI's
``.ci/run`` installs it.
"""
from __future__ import annotations

import contextlib
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM = os.environ.get("KVMLAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
# run by default (about 20 s each; the whole file stays under 2.5 minutes): 00 (plain
# ipywidgets: slider, progress bar), 04 (the exit monitor, live), 07 (page walk),
# 08 (registers, stepper).  KVMLAB_BROWSER_LESSONS=widgets runs every lesson with widgets.
DEFAULT_LESSONS = ["00", "04", "07", "08"]
LESSON_TIMEOUT = 240              # seconds for one lesson's Run All (cold kernels on a busy machine)

pytestmark = pytest.mark.slow


def displays_widgets(path: pathlib.Path) -> bool:
    """Whether a lesson displays widgets: a code cell that uses ``ipywidgets`` or a view from
    ``kvmlab.widgets`` and calls ``display(...)`` or ends with a bare expression (which
    Jupyter displays); a view only printed as text does not count."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    names = {"ipywidgets"}
    for src in code:
        for group in re.findall(r"from kvmlab\.widgets import ([\w, ]+)", src):
            names.update(n.strip() for n in group.split(",") if n.strip())
    for src in code:
        if not any(re.search(rf"\b{re.escape(n)}\b", src) for n in names):
            continue
        lines = [ln for ln in src.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        last = lines[-1] if lines else ""
        bare = not last[:1].isspace() and not re.match(r"(print|import|from|del|assert|raise|return)\b", last) \
            and not re.match(r"[\w.\[\], ]+\s*[-+*/|&]?=(?!=)", last)
        if "display(" in src or bare:
            return True
    return False


def _lessons() -> list[str]:
    """The lessons to run: ``$KVMLAB_BROWSER_LESSONS`` = ``all``, ``widgets`` (every lesson
    that displays widgets) or lesson numbers (``00,04``); by default DEFAULT_LESSONS."""
    every = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    choice = os.environ.get("KVMLAB_BROWSER_LESSONS", "").strip().lower()
    if choice == "all":
        return [p.stem for p in every]
    if choice == "widgets":
        return [p.stem for p in every if displays_widgets(p)]
    numbers = [n.strip() for n in choice.split(",") if n.strip()] or DEFAULT_LESSONS
    return [p.stem for p in every if p.stem[:2] in numbers]


def chromium_unavailable() -> str | None:
    """None if a headless Chromium can be driven here, else why not (the skip reason)."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return (f"Chromium is not installed ({CHROMIUM} not found): install it with "
                "`sudo apt-get install chromium` (CI's .ci/run does) to run the browser tests")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the Python package `playwright` is missing: `pip install -e '.[test]'` (tools/test.sh does)"
    return None


# ------------------------------------------------------------------------ the server
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, ""


def wait_for_http(url: str, proc: subprocess.Popen, log: pathlib.Path, timeout: float = 120.0) -> str:
    """Poll ``url`` until it answers 200; fail with the server log if the server dies or is slow."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the server exited with {proc.returncode}:\n{log.read_text(errors='replace')[-4000:]}")
        with contextlib.suppress(OSError):
            status, body = http_get(url, timeout=5)
            if status == 200:
                return body
        time.sleep(0.3)
    pytest.fail(f"no answer from {url} within {timeout:.0f} s:\n{log.read_text(errors='replace')[-4000:]}")


def stop_process_group(proc: subprocess.Popen, grace: float = 15.0) -> None:
    """SIGTERM the process group a server was started in (start_new_session=True), then SIGKILL."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def write_lab_settings(settings_dir: pathlib.Path) -> None:
    """A fresh, quiet JupyterLab: every cell in the DOM (so every output can be checked),
    no autosave, no news or update pop-ups."""
    settings = {
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
        "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
            "fetchNews": "false", "checkForUpdates": False},
    }
    for rel, value in settings.items():
        p = settings_dir / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(value), encoding="utf-8")


@pytest.fixture(scope="module")
def chromium():
    why = chromium_unavailable()
    if why:
        pytest.skip(why)
    return CHROMIUM


@pytest.fixture(scope="module")
def warm_sim(chromium):
    """Run guests/hello.S once on the simulator: in a cold numba cache that compiles the CPU
    (minutes), which must not happen inside a notebook kernel under the browser's clock."""
    cmd = [sys.executable, "-m", "kvmlab", "run", str(ROOT / "guests" / "hello.S"), "--backend", "sim",
           "--timeout", "600"]
    p = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, KVMLAB_BACKEND="sim"), capture_output=True,
                       text=True, timeout=900)
    assert p.returncode == 0 and "Hello from real mode!" in p.stdout, \
        f"the simulator cannot run guests/hello.S:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}"


@pytest.fixture(scope="module")
def lab(chromium, warm_sim):
    """A JupyterLab server on 127.0.0.1 serving copies of the lessons and tests/data/live_view.ipynb."""
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="kvmlab-browser-"))
    # the repository's layout around the copies: lessons find ../guests as in notebooks/
    work = tmp / "notebooks"
    work.mkdir()
    (tmp / "guests").symlink_to(ROOT / "guests", target_is_directory=True)
    for nb in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"):
        shutil.copy(nb, work / nb.name)
    shutil.copy(ROOT / "tests" / "data" / "live_view.ipynb", work / "live_view.ipynb")
    config = tmp / "config"
    write_lab_settings(config / "lab" / "user-settings")
    port, token = free_port(), os.urandom(16).hex()
    env = dict(os.environ, KVMLAB_BACKEND="sim", JUPYTER_CONFIG_DIR=str(config),
               JUPYTER_RUNTIME_DIR=str(tmp / "runtime"), JUPYTER_DATA_DIR=str(tmp / "data"),
               JUPYTER_PLATFORM_DIRS="1", MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
    env.pop("JUPYTER_TOKEN", None)
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           "--port-retries=0", f"--IdentityProvider.token={token}", "--allow-root",
           f"--ServerApp.root_dir={work}", f"--LabApp.user_settings_dir={config / 'lab' / 'user-settings'}",
           f"--LabApp.workspaces_dir={config / 'lab' / 'workspaces'}", "--LabApp.news_url=",
           "--ServerApp.open_browser=False"]
    log = tmp / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{base}/api/status?token={token}", proc, log)
        yield {"base": base, "token": token, "work": work, "log": log}
    finally:
        shutdown_kernels(base, token)
        stop_process_group(proc)
        shutil.rmtree(tmp, ignore_errors=True)


def shutdown_kernels(base: str, token: str) -> None:
    """Shut down every kernel of the server (a live guest keeps one busy)."""
    with contextlib.suppress(Exception):
        _, body = http_get(f"{base}/api/kernels?token={token}")
        for k in json.loads(body or "[]"):
            req = urllib.request.Request(f"{base}/api/kernels/{k['id']}?token={token}", method="DELETE")
            with contextlib.suppress(Exception):
                urllib.request.urlopen(req, timeout=10).close()


# ------------------------------------------------------------------------ the browser
@pytest.fixture(scope="module")
def page(chromium, lab):
    from playwright.sync_api import sync_playwright
    SHOTS.mkdir(parents=True, exist_ok=True)
    profile = tempfile.mkdtemp(prefix="kvmlab-chromium-")       # an empty --user-data-dir
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            profile, executable_path=chromium, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 1000}, ignore_default_args=["--enable-automation"])
        try:
            pg = ctx.pages[0] if ctx.pages else ctx.new_page()
            pg.set_default_timeout(60_000)
            yield pg
        finally:
            ctx.close()
            shutil.rmtree(profile, ignore_errors=True)


NB = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook"      # the notebook in the current tab

# state of the open notebook, read in the page: prompts, kernel status, outputs
STATE_JS = """() => {
  const nb = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook');
  if (!nb) return null;
  const cells = [...nb.querySelectorAll('.jp-Cell.jp-CodeCell')];
  const prompts = cells.map(c => (c.querySelector('.jp-InputArea-prompt') || {}).textContent || '');
  const ind = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator');
  return {prompts, status: ind ? ind.getAttribute('data-status') : null};
}"""


def open_notebook(page, lab, name: str) -> None:
    # a workspace of its own, reset: only this notebook is open
    stem = name.rsplit(".", 1)[0]
    page.goto(f"{lab['base']}/lab/workspaces/{stem}/tree/{name}?reset&token={lab['token']}")
    page.wait_for_selector(f"{NB} .jp-Cell", timeout=120_000)
    # the kernel is up when the status bar says so ("Python 3 (ipykernel) | Idle")
    page.wait_for_function("""() => { const b = document.querySelector('#jp-main-statusbar');
                                      return !!b && /\\|\\s*Idle/.test(b.innerText); }""", timeout=120_000)


def run_all_cells(page) -> None:
    """Run > Run All Cells, from the menu bar, as a learner would.  Until the kernel has
    connected the command does nothing, so it is repeated until a cell is queued or ran."""
    for _ in range(10):
        page.locator(NB).first.click(position={"x": 5, "y": 5})
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            state = page.evaluate(STATE_JS)
            if state and any(re.search(r"\*|\d", p) for p in state["prompts"]):
                return
            page.wait_for_timeout(200)
    pytest.fail(f"Run All Cells ran no cell: {page.evaluate(STATE_JS)}")


def wait_until_done(page, timeout: float) -> dict:
    """Wait until no cell is queued or running ('[*]') and the kernel is idle, a few times
    in a row.  Returns the final state."""
    deadline = time.monotonic() + timeout
    quiet = 0
    state = None
    while time.monotonic() < deadline:
        state = page.evaluate(STATE_JS)
        busy = state is None or state["status"] != "idle" or any("*" in p for p in state["prompts"])
        quiet = 0 if busy else quiet + 1
        if quiet >= 3:
            return state
        page.wait_for_timeout(400)
    pytest.fail(f"the notebook did not finish within {timeout:.0f} s: {state}")


def errors_in_outputs(page) -> list[str]:
    """Tracebacks shown in outputs, each with the first line of its cell's source."""
    return page.evaluate("""() => {
      const out = [];
      for (const o of document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output')) {
        const t = o.innerText || '';
        if (/Traceback \\(most recent call last\\)/.test(t)) {
          const cell = o.closest('.jp-Cell');
          const src = cell ? (cell.querySelector('.jp-InputArea-editor') || {}).innerText || '' : '';
          out.push(src.split('\\n')[0] + '  ->  ' + t.trim().split('\\n').slice(-1)[0]);
        }
      }
      return out;
    }""")


def widget_outputs(page):
    """The outputs rendered by the widget manager (its renderer, unlike the built-in ones,
    sets no data-mime-type): a rendered widget view inside, or "Loading widget..." /
    "Error displaying widget" as their text."""
    return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output:not([data-mime-type])")


def output_kinds(page) -> list[str]:
    """Each output's MIME type and the start of its text (for failure messages)."""
    return page.evaluate("""() => [...document.querySelectorAll(
        '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output')].map(
        o => (o.getAttribute('data-mime-type') || o.className) + ': ' + (o.innerText || '').slice(0, 60))""")


def output_text(page) -> str:
    return page.evaluate("""() => [...document.querySelectorAll(
        '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea')].map(o => o.innerText).join('\\n')""")


def shot(page, name: str, element=None) -> pathlib.Path:
    path = SHOTS / f"{name}.png"
    (element or page).screenshot(path=str(path))
    return path


def save_and_read(page, lab, name: str) -> dict:
    """File > Save (Ctrl+S) the open notebook (a copy in the server's temporary directory)
    and return it as saved: the outputs the kernel sent, whatever the page made of them."""
    path = lab["work"] / name
    before = path.stat().st_mtime_ns
    page.locator(NB).first.click(position={"x": 5, "y": 5})
    page.keyboard.press("Escape")
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + 30
    while path.stat().st_mtime_ns == before and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    assert path.stat().st_mtime_ns != before, f"saving {name} did not write it"
    page.wait_for_timeout(300)
    return json.loads(path.read_text(encoding="utf-8"))


def widget_cells(nb: dict) -> list[str]:
    """The first line of each code cell's source, once per widget output it holds."""
    return ["".join(c["source"]).split("\n")[0] for c in nb["cells"] if c["cell_type"] == "code"
            for o in c.get("outputs", []) if WIDGET_MIME in o.get("data", {})]


def close_notebook(page, lab) -> None:
    shutdown_kernels(lab["base"], lab["token"])


# ------------------------------------------------------------------------ the tests
def test_the_default_lessons_exist_and_display_widgets():
    lessons = {p.stem[:2]: p for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    for n in DEFAULT_LESSONS:
        assert n in lessons, f"lesson {n} is gone: update DEFAULT_LESSONS in {pathlib.Path(__file__).name}"
        assert displays_widgets(lessons[n]), f"{lessons[n].name} no longer displays widgets: update DEFAULT_LESSONS"


@pytest.mark.parametrize("lesson", _lessons())
def test_lesson_runs_in_jupyterlab_and_its_widgets_render(page, lab, lesson):
    open_notebook(page, lab, f"{lesson}.ipynb")
    shot(page, f"{lesson}-opened")
    run_all_cells(page)
    try:
        state = wait_until_done(page, LESSON_TIMEOUT)
        expected = widget_cells(save_and_read(page, lab, f"{lesson}.ipynb"))
        errors = errors_in_outputs(page)
        unrun = [i for i, p in enumerate(state["prompts"]) if not re.search(r"\[\d+\]", p)]
        widgets = widget_outputs(page)
        n = widgets.count()
        broken = []
        for i in range(n):
            w = widgets.nth(i)
            w.scroll_into_view_if_needed()
            page.wait_for_timeout(200)
            shot(page, f"{lesson}-widget-{i}", w.locator("xpath=ancestor::div[contains(@class,'jp-CodeCell')][1]"))
            text = w.inner_text()
            if "Error displaying widget" in text or "Loading widget" in text or w.locator(".jupyter-widgets").count() == 0:
                broken.append(f"widget output {i}: {w.inner_text()[:200]!r}")
        page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell").last.scroll_into_view_if_needed()
        shot(page, f"{lesson}-end")
        assert not errors, f"{lesson}: cells raised:\n" + "\n".join(errors)
        assert not unrun, f"{lesson}: code cells {unrun} did not run (prompts {state['prompts']})"
        assert "Error displaying widget" not in output_text(page), f"{lesson}: 'Error displaying widget' in an output"
        assert not broken, f"{lesson}: widgets did not render:\n" + "\n".join(broken)
        assert n == len(expected), \
            f"{lesson}: the kernel sent {len(expected)} widget outputs (cells {expected}), the page shows " \
            f"{n} widget views; the outputs in the page: {output_kinds(page)}"
    finally:
        close_notebook(page, lab)


def exit_count(text: str) -> int:
    m = re.search(r"exits:\s*(\d+)", text)
    return int(m.group(1)) if m else -1


def test_live_view_moves_while_a_guest_runs_in_the_background(page, lab):
    open_notebook(page, lab, "live_view.ipynb")
    run_all_cells(page)
    try:
        state = wait_until_done(page, LESSON_TIMEOUT)
        assert not errors_in_outputs(page), errors_in_outputs(page)
        assert all(re.search(r"\[\d+\]", p) for p in state["prompts"]), state
        view = widget_outputs(page).first
        view.scroll_into_view_if_needed()
        counts = view.locator(".widget-html pre, pre").first
        # the cell that started the guest has finished: only the live thread moves the view now
        deadline = time.monotonic() + 60
        while exit_count(counts.inner_text()) <= 0 and time.monotonic() < deadline:
            page.wait_for_timeout(250)
        first = exit_count(counts.inner_text())
        shot(page, "live_view-1")
        page.wait_for_timeout(2000)
        second = exit_count(counts.inner_text())
        shot(page, "live_view-2")
        assert "Error displaying widget" not in output_text(page)
        assert first > 0, f"the exit monitor shows no exits: {counts.inner_text()!r}"
        assert second > first, f"the live view did not move: exits {first} then {second}"
    finally:
        close_notebook(page, lab)
