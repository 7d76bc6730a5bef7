"""Every guest in guests/ does what its comment says, on each backend.

Backends come from ``KVMLAB_GUEST_BACKENDS`` (default ``"hw,sim"``), as in the facts
suite: hw is skipped with :func:`kvmlab.hw.unusable_reason`, sim while
``kvmlab.open("sim")`` raises :class:`kvmlab.BackendUnavailable`.  Only behaviour the
reference marks as generic KVM is asserted (no rip-at-exit, no state after SHUTDOWN).
"""
from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest

import kvmlab
from kvmlab import asm
from kvmlab.vmm import Machine

GUESTS = pathlib.Path(__file__).resolve().parent.parent / "guests"
from tests.guestbackends import BACKENDS, selected as _selected, warm_up as _warm_up


@pytest.fixture
def run(backend):
    """``run("hello")`` -> (machine, result); machines are closed after the test."""
    machines = []

    def go(name, timeout=10.0, max_exits=10_000, **kw):
        m = Machine.from_file(GUESTS / f"{name}.S", backend=backend, **kw)
        machines.append(m)
        return m, m.run(timeout=timeout, max_exits=max_exits)

    yield go
    for m in machines:
        m.close()


def reasons(result):
    return [e["reason"] for e in result.exits]


def io(result, port, direction=None):
    return [e for e in result.exits if e["reason"] == "IO" and e["port"] == port
            and (direction is None or e["direction"] == direction)]


def mmio(result):
    return [e for e in result.exits if e["reason"] == "MMIO"]


# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, mode", [("hello", "real"), ("hello32", "protected"), ("hello64", "long")])
def test_hello_prints_a_greeting_on_the_serial_port_and_exits_with_status_0(run, name, mode):
    m, r = run(name)
    assert r.console == f"Hello from {mode} mode!\n"
    assert (r.stop_reason, r.status, r.ok) == ("debug_exit", 0, True)
    assert set(reasons(r)) == {"IO"}
    assert r.regs["rip"] == m.program.symbols["stopped"]     # the OUT completed before the run ended
    cr0, efer = r.sregs["cr0"], r.sregs["efer"]
    assert (cr0 & 1, cr0 >> 31 & 1, efer >> 10 & 1) == {"real": (0, 0, 0), "protected": (1, 0, 0),
                                                      "long": (1, 1, 1)}[mode]


def test_hello_polls_the_line_status_register_before_each_character(run):
    m, r = run("hello")
    text = "Hello from real mode!\n"
    assert [e["port"] for e in r.exits[:-1]] == [0x3FD, 0x3F8] * len(text)
    assert all(e["data"] == "60" for e in io(r, 0x3FD))
    assert bytes.fromhex("".join(e["data"] for e in io(r, 0x3F8))).decode() == text


def test_the_same_guest_gives_the_same_result_twice(run):
    _, a = run("hello64")
    _, b = run("hello64")
    assert a.to_dict() == b.to_dict()


def test_pio_makes_in_and_out_exits_of_each_size_and_batches_rep_insb(run):
    m, r = run("pio")
    assert r.ok, r.summary()
    assert r.console == "PIO: out/in 1, 2, 4 bytes, rep outsb, rep insb\nPIO ok\n"
    outs = io(r, 0x510, direction=1)
    ins = io(r, 0x510, direction=0)
    assert [(e["size"], e["data"]) for e in outs] == [(1, "5a"), (2, "3412"), (4, "bebafeca")]
    assert [(e["size"], e["count"]) for e in ins] == [(1, 1), (2, 1), (4, 1), (1, 8)]
    assert ins[-1]["data"] == "be" * 8
    assert io(r, 0x80) == [{"reason": "IO", "direction": 0, "size": 1, "port": 0x80, "count": 1, "data": "ff"}]
    assert all(e["count"] == 1 for e in io(r, 0x3F8))          # rep outsb: one exit per byte


def test_mmio_makes_read_and_write_exits_that_the_scratch_device_answers(run):
    m, r = run("mmio")
    assert r.ok, r.summary()
    assert r.console == "MMIO ok\n"
    got = [(e["phys_addr"], e["len"], e["is_write"], e["data"]) for e in mmio(r)]
    assert got == [
        (0xD0000000, 1, True, "11"),
        (0xD0000002, 2, True, "3322"),
        (0xD0000004, 4, True, "77665544"),
        (0xD0000000, 4, False, "11003322"),
        (0xD0000004, 4, False, "77665544"),     # add [mem], 1: read ...
        (0xD0000004, 4, True, "78665544"),      # ... then write the sum
        (0xD0000004, 4, False, "78665544"),
        (0xE0000000, 4, False, "ffffffff"),     # nobody there
    ]
    assert m.scratch.read(0, 8) == 0x4455667822330011


def test_readonly_guest_runs_from_rom_and_its_write_there_is_an_mmio_exit(run):
    m, r = run("readonly")
    sig = m.program.symbols["signature"]
    assert r.ok, r.summary()
    assert r.console == "ROM unchanged after a write\n"
    assert mmio(r) == [{"reason": "MMIO", "phys_addr": sig, "len": 4, "is_write": True, "data": "efbeadde"}]
    assert m.read_phys(sig, 4) == b"ROM!"
    assert 0x80000 <= r.regs["rip"] < 0x81000
    assert m.read_phys(0x2000, 4) == bytes.fromhex("efbeadde")


def test_hlt_ends_the_run_with_a_hlt_exit(run):
    m, r = run("hlt")
    assert r.stop_reason == "hlt" and r.status is None
    assert r.console == "halting\n" and reasons(r)[-1] == "HLT" and r.exit_counts["HLT"] == 1


def test_a_machine_that_does_not_stop_on_hlt_resumes_after_it(run):
    m, r = run("hlt", stop_on_hlt=False)
    assert r.ok and reasons(r)[-2:] == ["HLT", "IO"]


def test_triple_fault_ends_in_shutdown(run):
    m, r = run("triple_fault")
    assert r.stop_reason == "shutdown" and reasons(r)[-1] == "SHUTDOWN"
    assert r.console == "about to triple fault\n" and r.exit_counts["SHUTDOWN"] == 1


def test_fetching_from_an_unmapped_address_is_an_emulation_internal_error(run):
    m, r = run("unmapped_fetch")
    assert r.stop_reason == "internal_error"
    last = r.exits[-1]
    assert last["reason"] == "INTERNAL_ERROR" and last["suberror"] == 1    # KVM_INTERNAL_ERROR_EMULATION
    assert r.console == "jumping to 0x40000000\n"


def test_coalesced_writes_make_no_exits_and_reach_devices_before_the_next_exit(run):
    m, r = run("coalesced")
    msg = "written through the coalesced ring\n"
    assert r.ok, r.summary()
    assert r.console == msg
    assert r.exit_counts == {"MMIO": 1, "IO": 1}              # the read and the debug-exit write
    assert mmio(r) == [{"reason": "MMIO", "phys_addr": 0xD0000800 + 60, "len": 4, "is_write": False,
                        "data": "0f100000"}]
    assert [e["data"] for e in r.coalesced if e["pio"]] == [f"{c:02x}" for c in msg.encode()]
    mm = [e for e in r.coalesced if not e["pio"]]
    assert [(e["phys_addr"], int.from_bytes(bytes.fromhex(e["data"]), "little")) for e in mm] == \
        [(0xD0000800 + 4 * i, 0x1000 + i) for i in range(16)]


def test_ioeventfd_doorbells_count_without_exits_and_other_lengths_exit(run):
    m, r = run("ioeventfd")
    assert r.ok, r.summary()
    assert r.ioeventfds == {"pio:0x520+2": 3, "mmio:0xd0002000+4": 2}
    assert io(r, 0x520) == [{"reason": "IO", "direction": 1, "size": 1, "port": 0x520, "count": 1, "data": "01"}]
    assert mmio(r) == [{"reason": "MMIO", "phys_addr": 0xD0002000, "len": 1, "is_write": True, "data": "03"}]
    assert r.console == "doorbells rung\n"


def test_an_irqfd_wakes_the_halted_guest_through_the_in_kernel_pic(run):
    m, r = run("irqfd")
    assert r.ok, r.summary()
    assert r.console == "waiting for IRQ 4\nIRQ 4 arrived as vector 4\n"
    assert set(reasons(r)) <= {"IO", "INTR"}                # HLT sleeps in the kernel: no HLT exit
    assert m.irqchip


def test_paging_guest_reads_through_its_own_page_tables(run):
    m, r = run("paging")
    assert r.ok, r.summary()
    assert r.console == "paging ok: aliases, higher half, remap + invlpg\n"
    assert r.sregs["cr3"] == 0x100000
    t = m.vcpu.translate
    assert t(0x400000).physical_address == 0x110000
    assert t(0x401000).physical_address == 0x111000
    assert t(0xFFFF800000000123).physical_address == 0x111123
    assert t(0x200000 + 0x1000).physical_address == 0x1000
    assert not t(0x600000).valid
    assert m.read_phys(0x110000, 8) == (0x1122334455667788).to_bytes(8, "little")


def test_vga_guest_writes_the_text_buffer_without_exits(run):
    m, r = run("vga")
    assert r.ok and r.exit_counts == {"IO": 1}
    lines = m.vga.lines()
    assert lines[0].rstrip() == "Hello from VGA text mode!"
    assert lines[1].rstrip() == "(no exits: this is RAM at 0xB8000)"
    assert m.read_phys(0xB8001, 1) == b"\x1f"


def test_a_hardware_breakpoint_on_a_label_stops_the_run_with_a_debug_exit(run):
    m, r = run("breakpoint")
    here = m.program.symbols["here"]
    assert r.stop_reason == "debug" and r.console == "before the breakpoint\n"
    last = r.exits[-1]
    assert (last["reason"], last["exception"], last["pc"], last["dr6"]) == ("DEBUG", 1, here, 0xFFFF0FF1)
    assert r.regs["rip"] == here                         # stopped before the instruction
    m.clear_breakpoints()
    r2 = m.run()
    assert r2.ok and r2.console == "before the breakpoint\nafter the breakpoint\n"


# ---------------------------------------------------------------------------------------------
TESTED = {"breakpoint", "hello", "hello32", "hello64", "pio", "mmio", "readonly", "hlt", "triple_fault",
          "unmapped_fetch", "coalesced", "ioeventfd", "irqfd", "paging", "vga"}


def test_every_guest_file_has_a_test_and_is_in_the_readme():
    names = {p.stem for p in GUESTS.glob("*.S")}
    assert names == TESTED
    readme = (GUESTS / "README.md").read_text()
    missing = [n for n in names if f"{n}.S" not in readme]
    assert not missing, f"guests/README.md does not mention {missing}"


@pytest.mark.skipif(not (shutil.which("as") and shutil.which("ld")), reason="GNU as/ld (binutils) are not installed")
@pytest.mark.parametrize("name", sorted(TESTED))
def test_each_guest_assembles_to_the_same_bytes_as_with_gnu_as(name, tmp_path):
    src = GUESTS / f"{name}.S"
    prog = asm.assemble_file(src)
    obj, binary = tmp_path / "g.o", tmp_path / "g.bin"
    try:
        subprocess.run(["as", "--64", "-o", str(obj), str(src)], check=True, capture_output=True)
        subprocess.run(["ld", "-m", "elf_x86_64", f"-Ttext={prog.base:#x}", "-e", "0", "--oformat=binary",
                        "-o", str(binary), str(obj)], check=True, capture_output=True)
    except subprocess.CalledProcessError as e:      # e.g. binutils without x86-64 support
        pytest.skip(f"GNU as/ld failed: {e.stderr.decode(errors='replace')[:200]}")
    assert prog.code == binary.read_bytes()


# ---------------------------------------------------------------------------------------------
def _both_backends():
    for name in BACKENDS:
        if name not in _selected():
            pytest.skip(f"the differential test needs both backends; {name!r} is not in KVMLAB_GUEST_BACKENDS")
        try:
            kvmlab.open(name).close()
        except kvmlab.BackendUnavailable as e:
            pytest.skip(f"the differential test needs both backends: {e}")
        _warm_up(name)


@pytest.mark.parametrize("name", sorted(TESTED))
def test_sim_and_hw_give_the_same_exits_registers_and_memory(name):
    _both_backends()
    results = {}
    for b in BACKENDS:
        with Machine.from_file(GUESTS / f"{name}.S", backend=b) as m:
            results[b] = m.run(timeout=60).to_dict()
    hw, sim = results["hw"], results["sim"]
    for d in (hw, sim):
        d.pop("backend")
        if d["stop_reason"] == "shutdown":       # state after a triple fault is vendor-specific (§8.3)
            d.pop("regs"), d.pop("sregs")
        last = d["exits"][-1]
        if last["reason"] == "INTERNAL_ERROR":   # data[] holds vendor exit information
            d["exits"][-1] = {"reason": "INTERNAL_ERROR", "suberror": last["suberror"]}
        if last["reason"] == "DEBUG":            # PVM reports dr7 = 0 (reference §9)
            last.pop("dr7")
    assert sim == hw
