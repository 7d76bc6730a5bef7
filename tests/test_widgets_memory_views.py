"""Memslot map, coalesced ring and irqfd/ioeventfd wiring views: state after a run and text forms."""
import re

import pytest

import kvmlab
from kvmlab import asm
from kvmlab.vmm import Machine
from kvmlab.widgets import CoalescedRingView, MemslotMap, Wiring

HOST = re.compile(r"0x0*7f[0-9a-f]{10}", re.I)

DIRTY = """
.code32
_start: mov byte ptr [0x203000], 1
        mov dword ptr [0x205ffe], 2
        hlt
"""


def clean(text):
    assert not HOST.search(text), text
    return text


@pytest.fixture
def machine():
    m = Machine(mode="protected", memory=0x100000, backend="auto")
    yield m
    m.close()


def test_the_memslot_map_lists_slots_holes_and_devices_in_address_order(machine):
    machine.add_rom(0x100000, 0x1000)
    text = clean(str(MemslotMap(machine)))
    lines = text.splitlines()
    assert lines[0] == "guest-physical address space: 2 slots, 1 MMIO device"
    assert lines[1] == "  0x00000000-0x000fffff  slot 0  RAM  1M"
    assert lines[2] == "  0x00100000-0x00100fff  slot 1  ROM  4K  (KVM_MEM_READONLY: writes exit as MMIO)"
    assert "MMIO device 'scratch-mmio'" in lines[4] and lines[5].startswith("  0xd0001000-0xffffffff  hole")
    assert "0x3f8-0x3ff serial" in lines[6]


def test_the_memslot_map_shows_the_pages_the_guest_dirtied(machine):
    mem = kvmlab.GuestMemory(0x10000)
    machine.vm.set_user_memory_region(5, 0x200000, mem, flags=kvmlab.KVM_MEM_LOG_DIRTY_PAGES)
    view = MemslotMap(machine)
    machine.load(asm.assemble(DIRTY, base=0x1000))
    machine.run()
    view.refresh()
    assert view.dirty == {5: {3, 5, 6}} and view.last_dirty[5] == [3, 5, 6]
    text = clean(str(view))
    assert "slot 5  RAM  64K  (KVM_MEM_LOG_DIRTY_PAGES)" in text
    assert "dirty pages of slot 5 (seen by this view): 3 of 16: 0x3, 0x5, 0x6" in text
    view.refresh()
    assert view.last_dirty[5] == [] and view.dirty[5] == {3, 5, 6}   # reading cleared KVM's log
    assert bytes(view.widget.children[0].value).startswith(b"\x89PNG")


def test_the_ring_view_shows_outstanding_entries_between_first_and_last():
    kvm = kvmlab.open("auto")
    with kvm.create_vm() as vm:
        mem = kvmlab.GuestMemory(0x10000)
        vm.set_user_memory_region(0, 0, mem)
        vm.register_coalesced_mmio(0x100000, 0x1000)
        vcpu = vm.create_vcpu(0)
        prog = asm.assemble(".code16\n_start: mov ax, 0xffff\n mov ds, ax\n"
                            " mov byte ptr [0x10], 0x11\n mov word ptr [0x20], 0x2233\n hlt", base=0x1000)
        mem.write(0x1000, prog.code)
        s = vcpu.get_sregs()
        s.cs.base, s.cs.selector = 0, 0
        vcpu.set_sregs(s)
        vcpu.set_regs(rip=0x1000, rflags=2)
        ring = CoalescedRingView(vcpu)
        assert ring.outstanding == [] and ring.used == []
        vcpu.run()
        assert ring.poll()
        assert (ring.first, ring.last, ring.outstanding) == (0, 2, [0, 1])
        text = clean(str(ring))
        assert text.splitlines()[0] == ("coalesced ring: first=0 last=2 outstanding=2 "
                                        "(170 slots; at most 169 outstanding)")
        assert "  [  0] F  MMIO 0x100000 len=1 data=11  outstanding" in text
        assert "  [  1]    MMIO 0x100010 len=2 data=3322  outstanding" in text
        vcpu.coalesced_ring.drain()
        ring.poll()
        assert ring.outstanding == [] and "consumed" in str(ring) and not ring.poll()
        assert bytes(ring.widget.children[0].value).startswith(b"\x89PNG")


def test_the_wiring_view_counts_ioeventfd_hits_without_exits():
    with Machine.from_file("guests/ioeventfd.S", backend="auto") as m:
        w = Wiring(m)
        m.run()
        w.refresh()
        assert w.ioevents == {"pio:0x520+2": 3, "mmio:0xd0002000+4": 2}
        text = clean(str(w))
        assert "pio:0x520+2       -> eventfd  fired 3" in text and "irqfds" in text


def test_the_wiring_view_raises_an_irqfd_and_counts_it():
    with Machine(mode="real", backend="auto", irqchip=True) as m:
        m.add_irqfd(4)
        w = Wiring(m)
        w.raise_irq(4)
        w.poll()
        assert "eventfd -> GSI 4  signalled here 1" in str(w)
        assert w.widget.children[1].children[0].description == "raise GSI 4"
