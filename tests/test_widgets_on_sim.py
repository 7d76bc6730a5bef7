"""The views on the simulated backend, where they also show what hw hides: the hardware
exit code of each exit, the kernel's trace events around it, and struct kvm."""
import re

import pytest

import kvmlab
from kvmlab.vmm import Machine
from kvmlab.widgets import (CoalescedRingView, ExitMonitor, KernelInspector, MemslotMap, PageWalk, Registers,
                            SerialConsole, Stepper, VgaScreen, Wiring)

HOST = re.compile(r"0x0*7f[0-9a-f]{10}", re.I)


@pytest.fixture(scope="module")
def sim():
    try:
        kvm = kvmlab.open("sim")
    except kvmlab.BackendUnavailable as e:
        pytest.skip(str(e))
    with Machine.from_file("guests/hello64.S", backend="sim") as warm:   # the first KVM_RUN may compile
        if warm.run(timeout=None).stop_reason != "debug_exit":
            pytest.skip("the simulated backend cannot run guests/hello64.S yet")
    return kvm


@pytest.fixture
def hello64(sim):
    m = Machine.from_file("guests/hello64.S", backend="sim")
    yield m
    m.close()


def test_on_sim_the_exit_monitor_shows_hardware_exit_codes_and_kernel_events(hello64):
    mon = ExitMonitor(hello64, kernel_trace=True)
    hello64.start(timeout=None).wait(timeout=600)
    mon.capture()
    d = mon.detail(1)
    assert "hardware exit code: 0x" in d and "simulated backend only" not in d
    assert "kernel events:" in d and "> kvm_exit:" in d


def test_on_sim_the_kernel_inspector_shows_struct_kvm_without_host_addresses_or_pids(hello64):
    k = KernelInspector(hello64)
    assert k.available
    text = str(k)
    assert text.startswith("struct kvm kvm-<pid>") and "slot 0" in text
    assert not HOST.search(text) and not re.search(r"kvm-\d", text)


def test_on_sim_every_view_has_a_host_free_text_form_after_a_background_run(hello64):
    views = [v(hello64) for v in (CoalescedRingView, MemslotMap, PageWalk, Registers, SerialConsole, Stepper,
                                  VgaScreen, Wiring)]
    hello64.start(timeout=None).wait(timeout=600)
    for v in views:
        text = str(v.refresh())
        assert text and not HOST.search(text), (type(v).__name__, text)
    assert str(views[4]).endswith("Hello from long mode!\n")
    assert "(agrees with the walk)" in str(views[2])


def test_on_sim_the_stepper_steps_and_stops_at_a_label(hello64):
    st = Stepper(hello64)
    assert st.step() == "single step" and st.rip == 0x1007
    st.add_breakpoint("puts")
    assert st.cont() == "breakpoint 0x1011 <puts>"
