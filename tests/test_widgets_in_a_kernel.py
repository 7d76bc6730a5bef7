"""The notebook pitfall, end to end in a real Jupyter kernel: comm messages are processed only
after a cell finishes, so a live view must keep sending updates from a background thread
while the vCPU runs -- display in one cell, run in another."""
import queue
import time

import pytest

jupyter_client = pytest.importorskip("jupyter_client.manager")
pytest.importorskip("ipykernel")

SETUP = '''
from kvmlab import asm
from kvmlab.vmm import Machine
from kvmlab.widgets import ExitMonitor, SerialConsole
m = Machine(mode="real", backend="auto")
m.load(asm.assemble(".code16\\n_start: mov al, 'x'\\n1: out 0xe9, al\\n jmp 1b", base=0x1000))
con = SerialConsole(m).live()
mon = ExitMonitor(m).live()
display(con); display(mon)
'''


def _execute(kc, code):
    """Run a cell; return its iopub messages up to the kernel going idle."""
    msg_id = kc.execute(code)
    reply = kc.get_shell_msg(timeout=120)
    assert reply["content"]["status"] == "ok", reply["content"]
    out = []
    while True:
        m = kc.get_iopub_msg(timeout=60)
        out.append(m)
        if (m["msg_type"] == "status" and m["content"]["execution_state"] == "idle"
                and m["parent_header"].get("msg_id") == msg_id):
            return out


def _drain(kc, seconds):
    out, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            out.append(kc.get_iopub_msg(timeout=0.1))
        except queue.Empty:
            pass
    return out


@pytest.mark.slow
def test_a_live_view_keeps_updating_after_the_cell_that_started_the_run_returned():
    km, kc = jupyter_client.start_new_kernel(kernel_name="python3")
    try:
        opened = [m for m in _execute(kc, SETUP) if m["msg_type"] == "display_data"]
        assert len(opened) == 2
        assert opened[0]["content"]["data"]["text/plain"].startswith("console (0 bytes)")
        _execute(kc, "h = m.start(timeout=None)")       # returns at once
        updates = [m for m in _drain(kc, 2.0) if m["msg_type"] == "comm_msg"
                   and "value" in m["content"]["data"].get("state", {})]
        assert len(updates) >= 5                      # the views moved while no cell ran
        assert len(updates) <= 2 * 2 * 30 + 10        # two views, at most 30 Hz each (plus a few images)
        _execute(kc, "r = h.stop(); assert r.stop_reason == 'stopped'")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
