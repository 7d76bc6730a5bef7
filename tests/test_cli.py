"""``python -m kvmlab run``, run as a subprocess the way graders and CI use it."""
from __future__ import annotations

import json
import os
import pathlib
import select
import signal
import subprocess
import sys
import time

import pytest

import kvmlab

ROOT = pathlib.Path(__file__).resolve().parent.parent
GUESTS = ROOT / "guests"


def kvmlab_cli(*args, timeout=60):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "kvmlab", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def one_line_error(proc) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("kvmlab: ")
    return lines[0]


@pytest.fixture
def guest(tmp_path):
    def write(text: str, name="g.S"):
        p = tmp_path / name
        p.write_text(text)
        return p
    return write


# ------------------------------------------------------------------------------ running
def test_run_prints_the_console_and_an_exit_summary(backend):
    p = kvmlab_cli("run", GUESTS / "hello.S", "--backend", backend)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("Hello from real mode!\n")
    assert f"hello.S (real mode) on {backend}" in p.stdout
    assert "stopped: debug_exit (status 0); exits: IO 45" in p.stdout
    assert p.stderr == ""


def test_json_prints_one_object_with_the_promised_keys(backend):
    p = kvmlab_cli("run", GUESTS / "hello64.S", "--backend", backend, "--json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert p.stdout.count("\n") == 1
    for key in ("backend", "console", "exits", "exit_counts", "regs", "sregs", "memory_sha256", "status"):
        assert key in d, key
    assert d["backend"] == backend and d["console"] == "Hello from long mode!\n" and d["status"] == 0
    assert d["exits"][0] == {"reason": "IO", "direction": 0, "size": 1, "port": 0x3FD, "count": 1, "data": "60"}
    assert sum(d["exit_counts"].values()) == len(d["exits"])
    assert isinstance(d["regs"]["rip"], int) and d["sregs"]["efer"] & 0x500 == 0x500
    assert d["sregs"]["cs"]["l"] == 1 and len(d["memory_sha256"]) == 64
    assert d["stop_reason"] == "debug_exit" and d["mode"] == "long"


def test_json_runs_are_reproducible(backend):
    a = kvmlab_cli("run", GUESTS / "pio.S", "--backend", backend, "--json")
    b = kvmlab_cli("run", GUESTS / "pio.S", "--backend", backend, "--json")
    assert a.stdout == b.stdout


def test_the_exit_status_is_the_guests_debug_exit_code(backend, guest):
    g = guest(".code16\n_start: mov al, 7\n out 0xf4, al\n")
    p = kvmlab_cli("run", g, "--backend", backend)
    assert p.returncode == 7 and "status 7" in p.stdout


def test_a_guest_that_stops_another_way_exits_0_and_says_why(backend):
    p = kvmlab_cli("run", GUESTS / "triple_fault.S", "--backend", backend, "--json")
    d = json.loads(p.stdout)
    assert p.returncode == 0 and d["stop_reason"] == "shutdown" and d["status"] is None
    assert d["exits"][-1]["reason"] == "SHUTDOWN"


def test_trace_prints_every_exit_on_stderr(backend):
    p = kvmlab_cli("run", GUESTS / "mmio.S", "--backend", backend, "--trace")
    assert p.returncode == 0
    trace = p.stderr.splitlines()
    assert len(trace) == 17
    assert "<MMIO write phys_addr=0xd0000000 len=1 data=11> -> scratch-mmio" in trace[0]
    assert "[stop: debug_exit]" in trace[-1]
    assert p.stdout.startswith("MMIO ok\n")


def test_mode_overrides_the_header(backend, guest):
    g = guest("# kvmlab: mode=real\nxor eax, eax\nout 0xf4, al\n")
    p = kvmlab_cli("run", g, "--backend", backend, "--mode", "long", "--json")
    d = json.loads(p.stdout)
    assert p.returncode == 0 and d["mode"] == "long" and d["sregs"]["efer"] & 0x400


# ------------------------------------------------------------------------------ guests that never stop
def test_a_guest_that_never_stops_is_ended_by_the_timeout(backend, guest):
    g = guest(".code16\n_start: jmp _start\n")
    t0 = time.monotonic()
    p = kvmlab_cli("run", g, "--backend", backend, "--timeout", "0.5")
    assert p.returncode == 124 and time.monotonic() - t0 < 30
    assert "did not stop within 0.5 s" in one_line_error(p)


def test_a_guest_that_exits_forever_is_ended_by_max_exits(backend, guest):
    g = guest(".code16\n_start: out 0x80, al\n jmp _start\n")
    p = kvmlab_cli("run", g, "--backend", backend, "--max-exits", "50", "--json")
    assert p.returncode == 124 and "50 exits (--max-exits)" in one_line_error(p)
    assert json.loads(p.stdout)["exit_counts"] == {"IO": 50}


def test_ctrl_c_stops_the_cli_without_a_traceback(backend, guest):
    g = guest(".code16\n_start: mov al, '.'\n out 0xe9, al\n1: jmp 1b\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "kvmlab", "run", str(g), "--backend", backend, "--timeout", "60"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)     # the guest printed: it is running
        assert ready and proc.stdout.read(1) == "."
        time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip() == "kvmlab: interrupted"


# ------------------------------------------------------------------------------ bad input
def test_a_missing_guest_file_is_a_one_line_error():
    p = kvmlab_cli("run", "guests/no_such_guest.S")
    assert p.returncode == 2 and "no_such_guest.S: no such guest file" in one_line_error(p)


def test_an_assembly_error_names_the_file_and_line(guest):
    g = guest(".code16\n_start:\n    mov ax, bx, cx\n", "broken.S")
    p = kvmlab_cli("run", g, "--backend", "auto")
    assert p.returncode == 2
    assert "assembly error: broken.S:3:" in one_line_error(p)


def test_a_bad_header_is_a_one_line_error(guest):
    g = guest("# kvmlab: rom=0x80000\n.code16\nhlt\n", "hdr.S")
    p = kvmlab_cli("run", g, "--backend", "auto")
    assert p.returncode == 2 and "hdr.S:1: rom=0x80000" in one_line_error(p)


def test_an_impossible_machine_is_a_one_line_error(guest):
    g = guest("# kvmlab: memory=0x10000 rom=0x8000+0x1000\n.code16\nhlt\n")
    p = kvmlab_cli("run", g, "--backend", "auto")
    assert p.returncode == 2 and "overlaps guest memory" in one_line_error(p)


@pytest.mark.parametrize("args", [["run"], ["run", "x.S", "--backend", "qemu"], ["run", "x.S", "--timeout", "soon"],
                                  ["fly"], []])
def test_bad_arguments_are_a_one_line_error_with_status_2(args):
    p = kvmlab_cli(*args)
    assert p.returncode == 2
    one_line_error(p)


def test_an_unavailable_backend_is_a_one_line_error():
    for name in ("hw", "sim"):
        try:
            kvmlab.open(name).close()
        except kvmlab.BackendUnavailable:
            p = kvmlab_cli("run", GUESTS / "hello.S", "--backend", name)
            assert p.returncode == 1 and f"backend '{name}' is not available" in one_line_error(p)
            return
    pytest.skip("both backends are available here")


def test_a_failure_inside_the_backend_is_a_one_line_error(tmp_path):
    sitecustomize = tmp_path / "sitecustomize.py"     # make KVM_RUN blow up inside the process
    sitecustomize.write_text(
        "import kvmlab.vcpu\n"
        "def broken(self):\n"
        "    raise AttributeError('simulated bug')\n"
        "kvmlab.vcpu.VcpuFd.run = broken\n")
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}")
    env.pop("KVMLAB_TRACEBACK", None)
    p = subprocess.run([sys.executable, "-m", "kvmlab", "run", str(GUESTS / "hello.S"), "--backend", "auto"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 1
    line = one_line_error(p)
    assert "internal error: AttributeError: simulated bug" in line and "KVMLAB_TRACEBACK=1" in line
