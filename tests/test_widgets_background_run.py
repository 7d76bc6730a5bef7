"""Machine.start(): the exit loop in a background thread, the basis of every live view."""
import time

import pytest

from kvmlab import asm
from kvmlab.vmm import Machine, background

HELLO = """
.code16
_start: mov al, 'h'
        out 0xe9, al
        mov al, 'i'
        out 0xe9, al
        hlt
"""
SPIN = """
.code16
_start: mov al, '.'
        out 0xe9, al
1:      jmp 1b
"""


@pytest.fixture
def machine():
    m = Machine(mode="real", backend="auto")
    yield m
    h = background.current(m)
    if h is not None and h.running:
        h.stop()
    m.close()


def test_start_returns_a_handle_whose_wait_gives_the_same_result_as_run(machine):
    machine.load(asm.assemble(HELLO, base=0x1000))
    h = machine.start()
    r = h.wait(timeout=30)
    assert r.stop_reason == "hlt" and r.console == "hi"
    assert [e["reason"] for e in h.exits] == ["IO", "IO", "HLT"]
    assert [e["index"] for e in h.exits] == [0, 1, 2] and all(e["vcpu"] == 0 for e in h.exits)
    assert all("rip" in e for e in h.exits) and not h.running and h.done
    assert background.current(machine) is h


def test_stop_kicks_a_spinning_guest_and_returns_a_stopped_result(machine):
    machine.load(asm.assemble(SPIN, base=0x1000))
    h = machine.start(timeout=None)
    deadline = time.monotonic() + 20
    while not h.exits and time.monotonic() < deadline:
        time.sleep(0.01)
    assert h.running
    r = h.stop()
    assert r.stop_reason == "stopped" and r.console == "."
    assert r.exit_counts.get("IO") == 1 and not h.running
    assert machine.vcpu.immediate_exit == 0


def test_a_second_start_on_a_running_vcpu_is_refused(machine):
    machine.load(asm.assemble(SPIN, base=0x1000))
    h = machine.start(timeout=None)
    with pytest.raises(RuntimeError, match="already running"):
        machine.start()
    h.stop()


def test_listeners_see_every_exit_and_then_none_when_the_run_ends(machine):
    machine.load(asm.assemble(HELLO, base=0x1000))
    seen = []
    h = background.RunHandle(machine)
    h.listeners.append(seen.append)
    h.start().wait(timeout=30)
    assert [r["reason"] for r in seen[:-1]] == ["IO", "IO", "HLT"] and seen[-1] is None


def test_an_error_in_the_run_thread_is_raised_by_wait(machine):
    machine.load(asm.assemble(HELLO, base=0x1000))

    def boom(ex, action):
        raise ValueError("boom")
    h = machine.start(trace=boom)
    with pytest.raises(ValueError, match="boom"):
        h.wait(timeout=30)


def test_a_long_run_keeps_the_first_records_but_counts_every_exit(machine):
    from kvmlab.widgets import ExitMonitor
    machine.load(asm.assemble(SPIN.replace("1:      jmp 1b", "1:      out 0xe9, al\n        jmp 1b"), base=0x1000))
    mon = ExitMonitor(machine)
    h = machine.start(timeout=None, max_exits=50, max_records=10)
    r = h.wait(timeout=30)
    assert r.stop_reason == "max_exits" and h.total == 50 and len(h.exits) == 10
    assert h.counts == {"IO": 50} == r.exit_counts
    assert mon.counts_text().splitlines()[0] == "exits: 50 (the first 10 kept for the timeline)"
