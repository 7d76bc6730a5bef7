"""Machine on each backend: mode setup as KVM sees it, loading, the run budget
(timeout, max_exits, Ctrl-C), results.  Backends as in tests/test_guests.py
(``KVMLAB_GUEST_BACKENDS``, default "hw,sim")."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import struct
import threading
import time

import pytest

from kvmlab import asm
from kvmlab.vmm import Machine, modes


@pytest.fixture
def machine(backend):
    made = []

    def make(mode="real", **kw):
        m = Machine(mode=mode, backend=backend, **kw)
        made.append(m)
        return m

    yield make
    for m in made:
        m.close()


def program(source: str, mode: str = "real", base: int = 0x1000):
    return asm.assemble(source, base=base, mode=mode)


SPIN = {"real": ".code16\n_start: jmp _start\n", "protected": ".code32\n_start: jmp _start\n",
        "long": ".code64\n_start: jmp _start\n"}


# ------------------------------------------------------------------------------ setup
def test_a_protected_mode_machine_has_segment_caches_that_match_its_gdt(machine):
    m = machine("protected")
    s = m.vcpu.get_sregs()
    gdt = struct.unpack("<6Q", m.read_phys(s.gdt.base, s.gdt.limit + 1))
    for name in ("cs", "ds", "es", "ss", "fs", "gs"):
        seg = getattr(s, name)
        want = modes.Segment.from_descriptor(seg.selector, gdt[seg.selector // 8])
        got = {f: getattr(seg, f) for f in ("base", "limit", "selector", "type", "present", "dpl", "db", "s", "l", "g")}
        assert got == {f: getattr(want, f) for f in got}, name
    assert s.cr0 & 1 and not s.efer & 0x400


def test_a_long_mode_machine_identity_maps_the_first_gib_with_2mib_pages(machine):
    m = machine("long")
    s = m.vcpu.get_sregs()
    assert s.cr0 >> 31 & 1 and s.cr4 & 0x20 and s.efer & 0x500 == 0x500 and s.cs.l == 1
    for va in (0x1000, 0x1FFFFF, 0xB8000, 0xD0000000, 0xFEE00000, 0xFFFFFFFF):
        t = m.vcpu.translate(va)
        assert t.valid and t.physical_address == va
    assert not m.vcpu.translate(0x100000000).valid


def test_a_real_mode_machine_starts_at_cs_zero(machine):
    m = machine("real")
    s = m.vcpu.get_sregs()
    assert (s.cs.base, s.cs.selector, s.cr0 & 1) == (0, 0, 0)


def test_the_guest_sees_the_supported_cpuid(machine):
    m = machine("long")
    m.load(program(".code64\n_start: xor eax, eax\n cpuid\n out 0xf4, al\n", "long"))
    r = m.run()
    assert r.status is not None and r.regs["rbx"] != 0          # "Auth"/"Genu"..., not zeros


def test_load_sets_rip_to_start_and_rsp_to_the_stack(machine):
    m = machine("real")
    m.load(program(".code16\nnop\n_start: hlt\n"), stack=0x7000)
    regs = m.vcpu.get_regs()
    assert (regs.rip, regs.rsp, regs.rflags) == (0x1001, 0x7000, 0x2)


def test_an_image_over_the_gdt_is_refused(machine):
    m = machine("protected")
    with pytest.raises(ValueError, match="overlaps the GDT"):
        m.load(program(".code32\n_start: hlt\n", "protected", base=0x52F))


def test_an_image_outside_ram_is_refused(machine):
    m = machine("protected", memory=0x20000)
    with pytest.raises(ValueError, match="not all guest memory"):
        m.load(program(".code32\n_start: hlt\n hlt\n", "protected", base=0x1FFFF))


def test_long_mode_needs_room_for_the_page_tables():
    with pytest.raises(ValueError, match="page tables"):
        Machine("long", memory=0x10000, backend="auto")


def test_a_rom_may_not_overlap_ram(machine):
    m = machine("real", memory=0x80000)
    with pytest.raises(ValueError, match="overlaps guest memory"):
        m.add_rom(0x7F000, 0x2000)


# ------------------------------------------------------------------------------ run budget
@pytest.mark.parametrize("mode", ["real", "long"])
def test_a_guest_spinning_without_exits_is_stopped_by_the_timeout(machine, mode):
    m = machine(mode)
    m.load(program(SPIN[mode], mode))
    t0 = time.monotonic()
    r = m.run(timeout=0.3)
    assert r.stop_reason == "timeout" and time.monotonic() - t0 < 5
    assert r.exits[-1]["reason"] == "INTR"
    r2 = m.run(timeout=0.2)                    # the vCPU is usable again
    assert r2.stop_reason == "timeout"


def test_a_halted_vcpu_with_an_irqchip_is_stopped_by_the_timeout(machine):
    m = machine("real", irqchip=True)
    m.load(program(".code16\n_start: cli\n hlt\n jmp _start\n"))
    r = m.run(timeout=0.3)
    assert r.stop_reason == "timeout"


def test_max_exits_stops_a_guest_that_exits_forever(machine):
    m = machine("real")
    m.load(program(".code16\n_start: out 0x80, al\n jmp _start\n"))
    r = m.run(max_exits=25)
    assert r.stop_reason == "max_exits" and r.exit_counts == {"IO": 25} and len(r.exits) == 25


def test_ctrl_c_during_a_run_raises_keyboardinterrupt_and_the_machine_survives(machine):
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("SIGINT goes to the main thread")
    m = machine("real")
    m.load(program(SPIN["real"]))
    main = threading.main_thread().ident
    timer = threading.Timer(0.2, signal.pthread_kill, (main, signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            m.run(timeout=5)
    finally:
        timer.cancel()
    assert m.run(timeout=0.2).stop_reason == "timeout"


# ------------------------------------------------------------------------------ results
def test_the_result_is_plain_json_with_the_promised_keys(machine):
    m = machine("real")
    m.load(program(".code16\n_start: mov al, 'x'\n out 0xe9, al\n mov al, 3\n out 0xf4, al\n"))
    r = m.run()
    d = json.loads(r.to_json())
    assert {"backend", "console", "exits", "exit_counts", "regs", "sregs", "memory_sha256", "status",
            "stop_reason"} <= set(d)
    assert (d["console"], d["status"], d["stop_reason"], d["exit_counts"]) == ("x", 3, "debug_exit", {"IO": 2})
    assert d["memory_sha256"] == hashlib.sha256(m.memory.read(0, m.memory.size)).hexdigest()
    assert d["sregs"]["cs"]["selector"] == 0 and d["regs"]["rax"] & 0xFF == 3
    assert not r.ok


def test_a_run_stopped_on_an_out_finishes_that_instruction(machine):
    m = machine("long")
    p = program(".code64\n_start: mov al, 0\n out 0xf4, al\nafter: hlt\n", "long")
    m.load(p)
    assert m.run().regs["rip"] == p.symbols["after"]


def test_a_trace_callback_sees_every_exit(machine):
    m = machine("real")
    m.load(program(".code16\n_start: out 0x80, al\n in al, 0x80\n hlt\n"))
    seen = []
    r = m.run(trace=lambda ex, action: seen.append((ex.name, action.stop)))
    assert seen == [("IO", False), ("IO", False), ("HLT", True)]
    assert r.exits[1]["data"] == "ff"


def test_devices_can_be_added_to_the_buses(machine):
    from kvmlab.vmm import Device

    class Answer(Device):
        name = "answer"

        def read(self, offset, size):
            return 42 + offset

    m = machine("protected")
    m.mmio.register(0xE0000000, 0x10, Answer())
    m.load(program(".code32\n_start: mov eax, dword ptr [0xe0000004]\n out 0xf4, al\n", "protected"))
    r = m.run()
    assert r.status == 46 and r.exits[0]["data"] == "2e000000"


def test_each_vcpu_sees_its_own_apic_id_in_cpuid(machine):
    m = machine("protected", vcpus=2)
    p = program(".code32\n_start: mov eax, 1\n cpuid\n shr ebx, 24\n mov eax, ebx\n out 0xf4, al\n", "protected")
    m.load(p, vcpu=1)
    assert len(m.vcpus) == 2 and m.run(vcpu=1).status == 1
    m.load(p)
    assert m.run().status == 0


def test_a_machine_first_used_in_a_worker_thread_is_still_stopped_by_its_timeout(backend):
    import subprocess
    import sys
    code = (
        "import threading\n"
        "from kvmlab import asm\n"
        "from kvmlab.vmm import Machine\n"
        "def work():\n"
        f"    with Machine(backend={backend!r}) as m:\n"
        "        m.load(asm.assemble('.code16\\n_start: jmp _start\\n', base=0x1000))\n"
        "        print(m.run(timeout=0.5).stop_reason, flush=True)\n"
        "t = threading.Thread(target=work)\n"
        "t.start()\n"
        "t.join()\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root)
    p = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert (p.returncode, p.stdout) == (0, "timeout\n"), p.stderr
