"""kvmlab.vmm without a backend: buses, devices, the exit handler (synthetic exits),
mode setup (GDT, page tables, SET_SREGS values) and guest headers."""
from __future__ import annotations

import struct
from types import SimpleNamespace

import pytest

import kvmlab
from kvmlab import exits, uapi
from kvmlab.uapi import ExitReason
from kvmlab.vmm import Action, Bus, Buses, Device, StopRun, drain_ring, handle_exit, modes
from kvmlab.vmm.devices import Console, DebugCon, DebugExit, Scratch, Serial16550, VgaText
from kvmlab.vmm.guest import GuestError, parse_header


# --------------------------------------------------------------------------- fakes
class FakeExit(SimpleNamespace):
    """A minimal stand-in for a kvmlab.exits object."""

    def fields(self):
        return {k: (v.hex() if isinstance(v, bytes) else v) for k, v in vars(self).items() if k != "reason"}


def io_out(port, data: bytes, size=1, count=None):
    return FakeExit(reason=ExitReason.IO, direction=1, size=size, port=port,
                    count=count if count is not None else len(data) // size, data=data)


def io_in(port, size=1, count=1):
    return FakeExit(reason=ExitReason.IO, direction=0, size=size, port=port, count=count, data=b"")


def mmio(addr, length, data: bytes | None = None):
    return FakeExit(reason=ExitReason.MMIO, phys_addr=addr, len=length, is_write=data is not None,
                    data=data if data is not None else b"")


def plain(reason):
    return FakeExit(reason=reason)


class Recorder(Device):
    name = "recorder"

    def __init__(self):
        super().__init__()
        self.log = []

    def read(self, offset, size):
        self.log.append(("r", offset, size))
        return 0x11223344

    def write(self, offset, size, value):
        self.log.append(("w", offset, size, value))


def machine_buses():
    console = Console()
    b = Buses()
    b.pio.register(0x3F8, 8, Serial16550(console))
    b.pio.register(0xF4, 1, DebugExit())
    b.pio.register(0xE9, 1, DebugCon(console))
    b.mmio.register(0xD0000000, 0x1000, Scratch(0x1000))
    return b, console


# --------------------------------------------------------------------------- bus
def test_a_device_sees_offsets_into_its_range():
    bus, dev = Bus("pio"), Recorder()
    bus.register(0x500, 8, dev)
    assert bus.read(0x503, 2) == (0x3344, "recorder")
    assert bus.write(0x507, 1, 0x1FF) == "recorder"
    assert dev.log == [("r", 3, 2), ("w", 7, 1, 0xFF)]


def test_overlapping_registrations_are_refused():
    bus = Bus("mmio")
    bus.register(0x1000, 0x100, Recorder())
    with pytest.raises(ValueError, match="overlaps"):
        bus.register(0x10FF, 1, Recorder())
    bus.register(0x1100, 1, Recorder())       # adjacent is fine


def test_an_address_nobody_registered_reads_all_ones_and_drops_writes():
    bus = Bus("pio")
    assert bus.read(0x80, 1) == (0xFF, None)
    assert bus.read(0x80, 4) == (0xFFFFFFFF, None)
    assert bus.write(0x80, 1, 0) is None


def test_unregister_removes_a_device():
    bus, dev = Bus(), Recorder()
    bus.register(0x10, 2, dev)
    bus.unregister(dev)
    assert bus.find(0x10) == (None, None)


# --------------------------------------------------------------------------- handle_exit
def test_an_out_to_the_serial_port_prints_a_character():
    buses, console = machine_buses()
    action = handle_exit(io_out(0x3F8, b"A"), buses)
    assert not action.stop and action.device == "serial" and console.text == "A"
    assert action.record == {"reason": "IO", "direction": 1, "size": 1, "port": 0x3F8, "count": 1, "data": "41"}


def test_string_out_writes_every_element_in_order():
    buses, console = machine_buses()
    handle_exit(io_out(0x3F8, b"abc", size=1, count=3), buses)
    assert console.text == "abc"


def test_an_in_from_the_line_status_register_says_ready_to_send():
    buses, _ = machine_buses()
    action = handle_exit(io_in(0x3FD), buses)
    assert action.complete == bytes([0x60]) and action.record["data"] == "60"


def test_a_string_in_reads_count_elements():
    b = Buses()
    b.pio.register(0x510, 16, Recorder())
    action = handle_exit(io_in(0x510, size=2, count=3), b)
    assert action.complete == bytes.fromhex("4433") * 3


def test_an_in_from_an_empty_port_completes_with_all_ones():
    action = handle_exit(io_in(0x80, size=4), Buses())
    assert action.complete == b"\xff" * 4 and action.device is None and not action.stop


def test_a_write_to_the_debug_exit_port_stops_the_run_with_its_status():
    buses, _ = machine_buses()
    action = handle_exit(io_out(0xF4, b"\x07"), buses)
    assert (action.stop, action.reason, action.status, action.device) == (True, "debug_exit", 7, "debug-exit")


def test_mmio_writes_and_reads_reach_the_device_at_an_offset():
    b, dev = Buses(), Recorder()
    b.mmio.register(0xD0000000, 0x1000, dev)
    assert not handle_exit(mmio(0xD0000010, 4, bytes.fromhex("78563412")), b).stop
    action = handle_exit(mmio(0xD0000020, 2), b)
    assert dev.log == [("w", 0x10, 4, 0x12345678), ("r", 0x20, 2)]
    assert action.complete == bytes.fromhex("4433") and action.record["data"] == "4433"


def test_an_mmio_read_of_nothing_completes_with_all_ones():
    action = handle_exit(mmio(0xE0000000, 8), Buses())
    assert action.complete == b"\xff" * 8


@pytest.mark.parametrize("reason, why", [
    (ExitReason.HLT, "hlt"), (ExitReason.SHUTDOWN, "shutdown"),
    (ExitReason.INTERNAL_ERROR, "internal_error"), (ExitReason.FAIL_ENTRY, "fail_entry"),
    (ExitReason.DEBUG, "debug"), (ExitReason.UNKNOWN, "unknown"), (ExitReason.SYSTEM_EVENT, "system_event"),
])
def test_exits_that_end_a_run_stop_with_their_reason(reason, why):
    action = handle_exit(plain(reason), Buses())
    assert action.stop and action.reason == why and action.record["reason"] == reason.name


@pytest.mark.parametrize("reason", [ExitReason.INTR, ExitReason.IRQ_WINDOW_OPEN])
def test_intr_and_irq_window_exits_continue(reason):
    assert handle_exit(plain(reason), Buses()) == Action(False)


def test_hlt_continues_when_the_machine_does_not_stop_on_hlt():
    assert not handle_exit(plain(ExitReason.HLT), Buses(), stop_on_hlt=False).stop


def test_an_exit_reason_the_loop_does_not_know_stops_the_run():
    action = handle_exit(plain(ExitReason.X86_RDMSR), Buses())
    assert action.stop and action.reason == "unhandled_x86_rdmsr"


def _page_with(reason: int, fmt: str, *values) -> bytearray:
    page = bytearray(3 * 4096)
    struct.pack_into("<I", page, 8, reason)
    struct.pack_into(fmt, page, 32, *values)
    return page


def test_the_completion_data_goes_into_the_real_kvm_run_page():
    page = _page_with(2, "<BBHIQ", 0, 1, 0x3FD, 1, 4096)          # IN al, dx from LSR
    ex = exits.decode(page)
    buses, _ = machine_buses()
    action = handle_exit(ex, buses)
    ex.complete(action.complete)
    assert page[4096] == 0x60

    page = _page_with(6, "<Q8sIB", 0xD0000000, b"\0" * 8, 4, 0)   # 4-byte MMIO read
    ex = exits.decode(page)
    buses.mmio.find(0xD0000000)[0].write(0, 4, 0xAABBCCDD)
    ex.complete(handle_exit(ex, buses).complete)
    assert page[40:44] == bytes.fromhex("ddccbbaa")


# --------------------------------------------------------------------------- coalesced ring
class FakeRing:
    def __init__(self, entries):
        self.entries = entries

    def drain(self):
        out, self.entries = self.entries, []
        return out


def test_draining_the_ring_replays_each_entry_as_a_write_on_its_bus():
    buses, console = machine_buses()
    ring = FakeRing([kvmlab.CoalescedWrite(0xE9, 1, 1, b"h" + b"\0" * 7),
                     kvmlab.CoalescedWrite(0xD0000004, 4, 0, bytes.fromhex("0100000000000000")),
                     kvmlab.CoalescedWrite(0xE9, 1, 1, b"i" + b"\0" * 7)])
    entries, stop = drain_ring(ring, buses)
    assert console.text == "hi" and stop is None
    assert buses.mmio.find(0xD0000000)[0].read(4, 4) == 1
    assert [e["data"] for e in entries] == ["68", "01000000", "69"]
    assert drain_ring(ring, buses) == ([], None)


def test_a_debug_exit_write_in_the_ring_is_reported_after_the_whole_ring_is_delivered():
    buses, console = machine_buses()
    ring = FakeRing([kvmlab.CoalescedWrite(0xF4, 1, 1, b"\x05" + b"\0" * 7),
                     kvmlab.CoalescedWrite(0xE9, 1, 1, b"!" + b"\0" * 7)])
    entries, stop = drain_ring(ring, buses)
    assert stop.status == 5 and console.text == "!"


# --------------------------------------------------------------------------- devices
def test_the_uart_reports_an_idle_transmitter_and_prints_thr_writes():
    uart = Serial16550()
    assert uart.read(5, 1) & 0x60 == 0x60
    uart.write(0, 1, ord("x"))
    assert uart.text == "x" and uart.console.text == "x"


def test_the_uart_divisor_latch_hides_thr_while_dlab_is_set():
    uart = Serial16550()
    uart.write(3, 1, 0x80)          # DLAB
    uart.write(0, 1, 0x01)          # DLL, not a character
    uart.write(1, 1, 0x00)
    uart.write(3, 1, 0x03)          # 8N1, DLAB off
    assert uart.text == "" and uart.dll == 1 and uart.read(3, 1) == 3


def test_the_uart_scratch_register_and_input_queue_work():
    uart = Serial16550()
    uart.write(7, 1, 0xA5)
    assert uart.read(7, 1) == 0xA5
    uart.feed(b"k")
    assert uart.read(5, 1) & 1 and uart.read(0, 1) == ord("k") and not uart.read(5, 1) & 1


def test_debugcon_prints_and_identifies_itself():
    con = DebugCon()
    con.write(0, 1, ord("z"))
    assert con.text == "z" and con.read(0, 1) == 0xE9


def test_the_vga_view_is_25_lines_of_80_characters():
    mem = kvmlab.GuestMemory(0x100000)
    mem.write(0xB8000 + 160, b"O\x07K\x07\x01\x07")
    vga = VgaText(mem)
    lines = vga.lines()
    assert len(lines) == 25 and all(len(x) == 80 for x in lines)
    assert lines[1].startswith("OK ") and lines[0].strip() == ""
    assert vga.text().count("\n") == 24


def test_scratch_storage_reads_back_what_was_written():
    s = Scratch(8)
    s.write(0, 4, 0x11223344)
    assert s.read(1, 2) == 0x2233 and s.read(6, 4) == 0xFFFF0000


# --------------------------------------------------------------------------- modes
@pytest.mark.parametrize("seg", [modes.CODE32, modes.DATA, modes.CODE64, modes.TSS])
def test_each_gdt_descriptor_decodes_to_the_segment_cache_given_to_kvm(seg):
    assert modes.Segment.from_descriptor(seg.selector, seg.descriptor()) == seg


def test_the_gdt_image_holds_the_descriptors_at_their_selectors():
    gdt = modes.gdt_bytes()
    assert len(gdt) == modes.GDT_LIMIT + 1
    words = struct.unpack("<6Q", gdt)
    assert words[0] == 0
    for seg in (modes.CODE32, modes.DATA, modes.CODE64, modes.TSS):
        assert modes.Segment.from_descriptor(seg.selector, words[seg.selector // 8]) == seg
    assert words[modes.SEL_CODE32 // 8] == 0x00CF9B000000FFFF
    assert words[modes.SEL_CODE64 // 8] == 0x00AF9B000000FFFF


def test_page_tables_identity_map_each_gib_with_2mib_pages():
    mem = kvmlab.GuestMemory(0x20000)
    cr3 = modes.write_page_tables(mem, gib=4)
    q = mem.view("<u8")
    assert cr3 == 0x10000 and q[0x10000 // 8] == 0x11003
    assert [q[0x11000 // 8 + g] for g in range(5)] == [0x12003, 0x13003, 0x14003, 0x15003, 0]
    assert q[0x15000 // 8 + 511] == (3 << 30) + (511 << 21) + 0x83


def test_long_mode_sregs_set_paging_pae_and_lme_lma():
    s = modes.set_mode(uapi.kvm_sregs(), "long", cr3=0x10000)
    assert (s.cr0, s.cr3, s.cr4, s.efer) == (0x80000011, 0x10000, 0x20, 0x500)
    assert (s.cs.selector, s.cs.l, s.cs.db, s.ds.selector, s.tr.selector) == (0x18, 1, 0, 0x10, 0x20)
    assert (s.gdt.base, s.gdt.limit, s.idt.limit) == (0x500, 0x2F, 0)


def test_protected_mode_sregs_set_pe_and_flat_32bit_segments():
    s = modes.set_mode(uapi.kvm_sregs(), "protected")
    assert (s.cr0, s.efer, s.cs.selector, s.cs.db, s.cs.limit, s.ss.selector) == (0x11, 0, 8, 1, 0xFFFFFFFF, 0x10)


def test_real_mode_sregs_put_cs_at_zero():
    s = uapi.kvm_sregs()
    s.cs.base, s.cs.selector = 0xFFFF0000, 0xF000
    modes.set_mode(s, "real")
    assert (s.cs.base, s.cs.selector, s.idt.limit) == (0, 0, 0x3FF)


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="unknown mode"):
        modes.set_mode(uapi.kvm_sregs(), "virtual8086")


# --------------------------------------------------------------------------- guest headers
def test_a_header_gives_mode_memory_slots_and_eventfds():
    h = parse_header(
        "# kvmlab: mode=long load=0x2000 stack=0x9000 memory=4M gib=2\n"
        "# kvmlab: rom=0x400000+0x1000 coalesced=0xd0000000+0x100 coalesced_pio=0xe9+1\n"
        "# kvmlab: ioeventfd=0xd0002000+4 ioeventfd_pio=0x520+1:0x42 irqfd=4@0.2\n"
        ".code64\n")
    assert (h.mode, h.load, h.stack, h.memory, h.gib) == ("long", 0x2000, 0x9000, 4 << 20, 2)
    assert h.rom == [(0x400000, 0x1000)] and h.coalesced == [(0xD0000000, 0x100)]
    assert h.coalesced_pio == [(0xE9, 1)]
    assert h.ioeventfd == [(0xD0002000, 4, None)] and h.ioeventfd_pio == [(0x520, 1, 0x42)]
    assert h.irqfd == [(4, 0.2)] and h.irqchip


def test_a_header_may_ask_for_breakpoints_by_label_or_address():
    h = parse_header("# kvmlab: breakpoint=here breakpoint=0x1004\nnop\n")
    assert h.breakpoint == ["here", "0x1004"]


def test_header_lines_after_the_first_statement_are_ignored():
    h = parse_header("# kvmlab: mode=real\nnop\n# kvmlab: mode=long\n")
    assert h.mode == "real"


@pytest.mark.parametrize("line, message", [
    ("# kvmlab: colour=blue", "unknown header key 'colour'"),
    ("# kvmlab: rom=0x80000", "START\\+SIZE"),
    ("# kvmlab: memory=lots", "not a number"),
    ("# kvmlab: mode=virtual", "real, protected or long"),
    ("# kvmlab: ioeventfd_pio=0x520+3", "length must be"),
    ("# kvmlab: irqfd=4@soon", "GSI@SECONDS"),
    ("# kvmlab: irqchip", "not key=value"),
])
def test_a_bad_header_line_is_an_error_that_names_the_line(line, message):
    with pytest.raises(GuestError, match=message) as info:
        parse_header("\n" + line + "\nnop\n", "g.S")
    assert str(info.value).startswith("g.S:2:")


def test_stoprun_carries_a_reason_and_a_status():
    with pytest.raises(StopRun) as info:
        DebugExit().write(0, 2, 0x102)
    assert (info.value.reason, info.value.status) == ("debug_exit", 0x102)
