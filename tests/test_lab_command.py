"""The README's first command, ``bash tools/lab.sh``, opens the lessons in JupyterLab.

The test runs the script as a learner would, with the extra arguments it passes on to
``jupyter lab`` (loopback, a free port, a token, no browser, root allowed) and temporary
Jupyter runtime/config/data directories, waits until the server answers on ``/lab`` and
lists the lessons of ``notebooks/`` (the directory the script opens), and stops it cleanly:
SIGTERM to the script's process group (``exec`` makes the server the group's leader), then
it waits for the server to shut down and checks that the port is free again.

The script reuses the repository's ``.venv`` (``tools/test.sh`` made it); its
``pip install -e .[lab]`` then finds every requirement installed and only refreshes the
editable kvmlab (quietly: ``PIP_QUIET``; a few seconds, but it needs the package index for
the build backend, setuptools).  Without a ``.venv`` the script would create one and install
JupyterLab into it: the test skips then, saying so.
"""
from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
LESSONS = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, ""


def port_is_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_lab_sh_serves_the_lessons_and_stops_cleanly(tmp_path):
    if not os.access(ROOT / ".venv" / "bin" / "python", os.X_OK):
        pytest.skip("no .venv in the repository: tools/lab.sh would create one and install JupyterLab "
                    "into it (run the suite with `bash tools/test.sh`, which makes .venv)")
    port, token = free_port(), os.urandom(16).hex()
    config = tmp_path / "config"
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(config), JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTER_DATA_DIR=str(tmp_path / "data"), JUPYTER_PLATFORM_DIRS="1",
               PIP_QUIET="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    env.pop("JUPYTER_TOKEN", None)
    args = ["--no-browser", "--ip=127.0.0.1", f"--port={port}", "--port-retries=0",
            f"--IdentityProvider.token={token}", "--allow-root",
            f"--LabApp.workspaces_dir={config / 'workspaces'}", f"--LabApp.user_settings_dir={config / 'settings'}"]
    log = tmp_path / "lab.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(["bash", "tools/lab.sh", *args], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

    def tail() -> str:
        return log.read_text(errors="replace")[-4000:]

    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        status = None
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"tools/lab.sh exited with {proc.returncode}:\n{tail()}"
            with contextlib.suppress(OSError):
                status, page = get(f"{base}/lab?token={token}")
                if status == 200:
                    break
            time.sleep(0.3)
        assert status == 200, f"JupyterLab did not answer on /lab within 180 s (last status {status}):\n{tail()}"
        assert "jupyter-config-data" in page and "JupyterLab" in page, page[:500]

        status, body = get(f"{base}/api/contents?token={token}")
        assert status == 200, f"/api/contents answered {status}"
        listed = {item["name"] for item in json.loads(body)["content"]}
        assert LESSONS and set(LESSONS) <= listed, f"the lessons are not listed: missing {set(LESSONS) - listed}"

        status, _ = get(f"{base}/lab/tree/{LESSONS[0]}?token={token}")
        assert status == 200, f"/lab/tree/{LESSONS[0]} answered {status}"
        status, _ = get(f"{base}/api/contents?token=wrong")
        assert status == 403, f"the server answers without the token (status {status})"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            rc = proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
            pytest.fail(f"JupyterLab did not stop within 20 s of SIGTERM:\n{tail()}")
    assert rc in (0, -signal.SIGTERM, 128 + signal.SIGTERM), f"tools/lab.sh ended with {rc}:\n{tail()}"
    assert not port_is_open(port), f"port {port} is still open after the server stopped"
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, 0)
        pytest.fail("processes of tools/lab.sh's group are still running after it stopped")
