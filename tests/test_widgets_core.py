"""The widgets' shared machinery (throttle, live refresher, text forms) and the simple views:
registers, console, VGA, struct kvm inspector, exit monitor."""
import re
import time
import types

import pytest

from kvmlab import asm
from kvmlab.vmm import Machine
from kvmlab.widgets import ExitMonitor, KernelInspector, Registers, SerialConsole, VgaScreen
from kvmlab.widgets._base import Live, Throttle, View, scrub
from kvmlab.widgets.kernel import host_free

HOST = re.compile(r"0x0*7f[0-9a-f]{10}", re.I)

HELLO = """
.code16
_start: mov ax, 0x4142
        mov dx, 0x3f8
        out dx, al
        mov al, ah
        out dx, al
        hlt
"""


@pytest.fixture
def machine():
    m = Machine(mode="real", backend="auto")
    m.load(asm.assemble(HELLO, base=0x1000))
    yield m
    m.close()


def no_host_addresses(text):
    assert not HOST.search(text), text
    return text


# ------------------------------------------------------------------ throttle and live
def test_the_throttle_allows_at_most_one_event_per_interval():
    t = Throttle(hz=30)
    assert t.ready(0.0) and not t.ready(0.02) and t.ready(0.034) and not t.ready(0.05)
    assert t.ready(1.0)


def test_the_throttle_refuses_a_non_positive_rate():
    with pytest.raises(ValueError):
        Throttle(hz=0)


class CountingView(View):
    def __init__(self, machine):
        super().__init__(machine)
        self.shown = 0
        self.changes = 0

    def poll(self):
        return self.changes > 0

    def show(self):
        self.shown += 1

    def text(self):
        return "counting"


def test_the_live_refresher_redraws_at_most_hz_times_a_second_however_often_it_ticks(machine):
    view = CountingView(machine)
    view.changes = 1                                  # always dirty
    live = Live(view, machine, hz=30)
    draws = sum(live.step(now=i * 0.001) for i in range(1000))   # one second of 1 ms ticks
    assert draws == 30


def test_the_live_refresher_does_not_redraw_when_nothing_changed(machine):
    view = CountingView(machine)
    live = Live(view, machine, hz=30)
    assert live.step(now=0.0)                         # the first draw
    assert not any(live.step(now=1.0 + i) for i in range(5))


def test_the_live_refresher_follows_a_background_run_and_captures_between_exits(machine):
    regs = Registers(machine)
    live = Live(regs, machine, hz=30)
    live.step(now=0.0)
    h = machine.start()
    h.wait(timeout=30)
    live.step(now=1.0)
    assert live.handle is h
    assert regs.values["rax"] & 0xFFFF == 0x4141 and "rip" in regs.changed


def test_live_returns_the_view_and_keeps_it_moving_in_a_thread(machine):
    con = SerialConsole(machine)
    assert con.live() is con
    try:
        machine.start().wait(timeout=30)
        deadline = time.monotonic() + 5
        while con.output != "BA" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert con.output == "BA"
    finally:
        con.stop_live()


def test_scrub_hides_host_addresses():
    assert scrub("at 0x7f12345678ab and 0x1000") == "at <host> and 0x1000"


# ------------------------------------------------------------------ registers
def test_registers_highlight_what_the_run_changed(machine):
    regs = Registers(machine)
    machine.run()
    text = no_host_addresses(str(regs.refresh()))
    assert "rip 0x000000000000100b*" in text
    assert set(regs.changed) >= {"rax", "rdx", "rip"} and "rbx" not in regs.changed
    assert "cr0 0x60000010  [ET NW CD]" in text


def test_the_registers_widget_marks_changes_in_html(machine):
    regs = Registers(machine)
    machine.run()
    regs.refresh()
    assert "background" in regs.widget.value and "rax 0x" in regs.widget.value


def test_a_views_mimebundle_text_is_its_text_form(machine):
    regs = Registers(machine)
    bundle = regs._repr_mimebundle_()
    assert bundle["text/plain"] == str(regs) == repr(regs)
    assert "application/vnd.jupyter.widget-view+json" in bundle


# ------------------------------------------------------------------ console, VGA
def test_the_console_shows_what_the_guest_printed(machine):
    con = SerialConsole(machine)
    machine.run()
    assert str(con.refresh()) == "console (2 bytes)\nBA"


def test_console_input_reaches_the_serial_port(machine):
    con = SerialConsole(machine)
    con.send("x")
    assert machine.serial.read(0, 1) == ord("x")


def test_the_vga_screen_frames_the_80x25_buffer(machine):
    machine.write_phys(0xB8000 + 160, b"O\x1fK\x1f")
    vga = VgaScreen(machine)
    lines = no_host_addresses(str(vga)).splitlines()
    assert len(lines) == 28 and lines[3].startswith("|OK ") and len(lines[3]) == 82
    assert "color:#ffffff;background:#0000aa" in vga.widget.value


def test_the_vga_screen_redraws_only_when_the_buffer_changes(machine):
    vga = VgaScreen(machine)
    assert not vga.poll()
    machine.write_phys(0xB8000, b"!")
    assert vga.poll() and not vga.poll()


# ------------------------------------------------------------------ struct kvm
def test_the_kernel_inspector_says_simulated_backend_only_on_hw():
    from kvmlab.hw import unusable_reason
    if unusable_reason():
        pytest.skip(unusable_reason())
    with Machine(mode="real", backend="hw") as m:
        assert "simulated backend only" in str(KernelInspector(m))


def test_the_kernel_inspector_shows_the_kernel_text_without_host_addresses():
    from kvmlab.vm import MemorySlot
    slot = MemorySlot(0, 0, 0x10000, 0x7F0012340000, 0)
    kernel = types.SimpleNamespace(text=lambda: "struct kvm: slot 0 userspace_addr=0x7f0012341000 run=0x7f99aa001000")
    vm = types.SimpleNamespace(kernel=kernel, slots={0: slot}, vcpus={}, backend=types.SimpleNamespace(name="sim"))
    text = str(KernelInspector(vm))
    assert text == "struct kvm: slot 0 userspace_addr=<slot 0 host + 0x1000> run=<host>"


def test_host_free_leaves_guest_addresses_alone():
    assert host_free("gpa 0x1000 size 0x200000", {}) == "gpa 0x1000 size 0x200000"


# ------------------------------------------------------------------ exits
def test_the_exit_monitor_counts_and_explains_the_exits_of_a_background_run(machine):
    mon = ExitMonitor(machine)
    machine.start().wait(timeout=30)
    mon.capture()
    assert mon.counts() == {"IO": 2, "HLT": 1}
    text = no_host_addresses(str(mon))
    assert "vCPU 0: IO x2, HLT" in text
    d = mon.detail(1)
    assert "kvm_run: direction=1 (OUT) size=1 port=0x3f8 count=1 data=41" in d
    assert "instruction: 0x1009: out dx, al" in d and "<_start+0x9>" in d
    assert "hardware exit code:" in d
    assert "hlt" in mon.detail(2)


def test_the_exit_monitor_loads_a_finished_run_result(machine):
    mon = ExitMonitor(machine)
    mon.load(machine.run())
    assert mon.counts_text().splitlines()[0] == "exits: 3"
    assert "no rip recorded" in mon.detail(0)
    assert "none" in mon.detail(9)


def test_the_exit_monitor_widget_has_a_timeline_image_and_a_selectable_exit(machine):
    mon = ExitMonitor(machine)
    machine.run(trace=mon.trace)
    w = mon.widget
    assert bytes(mon._image.value).startswith(b"\x89PNG")
    mon._slider.value = 0
    assert "exit #0 on vCPU 0: IO" in mon._detail.value
    assert len(w.children) == 4


def test_a_live_view_stops_refreshing_when_its_machine_is_closed():
    m = Machine(mode="real", backend="auto")
    con = SerialConsole(m).live()
    thread = con._live.thread
    m.close()
    thread.join(2.0)
    assert not thread.is_alive()


def test_the_exit_monitor_lists_the_kernel_trace_events_that_led_to_an_exit(machine):
    ev = lambda name, **f: types.SimpleNamespace(ts=123.456, vcpu=0, name=name, fields=f)  # noqa: E731
    trace = types.SimpleNamespace(on=True, events=[
        ev("kvm_entry", rip=0x1000), ev("kvm_pio", rw="write", port=0x3F8, size=1),
        ev("kvm_exit", reason="IO_INSTRUCTION", code=30), ev("kvm_entry", rip=0x1007),
        ev("kvm_exit", reason="HLT", code=12)])
    mon = ExitMonitor(machine)
    mon.vm = types.SimpleNamespace(kernel=types.SimpleNamespace(trace=trace), slots=machine.vm.slots)
    assert mon.kernel_events(0) == ["  kvm_entry: rip=0x1000", "  kvm_pio: rw=write port=0x3f8 size=0x1",
                                    "> kvm_exit: reason=IO_INSTRUCTION code=0x1e", "  kvm_entry: rip=0x1007"]
    assert mon.kernel_events(1) == ["  kvm_entry: rip=0x1007", "> kvm_exit: reason=HLT code=0xc"]
    assert mon.kernel_events(5) == []
    trace.on = False
    assert "trace is off" in mon.kernel_events(0)[0]


def test_the_exit_monitor_has_no_kernel_events_on_hw():
    from kvmlab.hw import unusable_reason
    if unusable_reason():
        pytest.skip(unusable_reason())
    with Machine(mode="real", backend="hw") as m:
        mon = ExitMonitor(m, kernel_trace=True)
        assert mon.kernel_events(0) is None


def test_the_exit_monitor_shows_the_newest_run_whether_background_or_traced(machine):
    mon = ExitMonitor(machine)
    machine.start().wait(timeout=30)
    assert mon.counts() == {"IO": 2, "HLT": 1}
    machine.load(asm.assemble(".code16\n_start: hlt", base=0x1000))
    machine.run(trace=mon.trace)
    assert mon.counts() == {"HLT": 1}
    machine.load(asm.assemble(HELLO, base=0x1000))
    machine.start().wait(timeout=30)
    assert mon.counts() == {"IO": 2, "HLT": 1}
