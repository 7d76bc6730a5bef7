"""The simulated KVM_RUN's fast path (``x86_run.make_kvm_run`` + ``kvm_run.enter_ctx``)
must be invisible: every exit leaves the same kvm_run bytes, PIO data, coalesced ring,
registers and stats as the general path (``x86_run.FAST_PATH = False``) and as the
traced path (tracing on: every exit handled in Python, ``fast_exit`` + ``_handle_exit``),
and the state that needs the general path still gets it."""
import numpy as np
import pytest

import kvmlab
from kvmlab.asm import assemble
from kvmlab.sim import kvm_run as KR
from kvmlab.sim import x86_run

GUEST = """.code16
    mov ax, 0x2000
    mov ds, ax
    mov dx, 0x80
    out dx, al                  ; OUT
    in al, dx                   ; IN, completed by the VMM
    out 0x81, ax
    mov byte ptr [0], al        ; MMIO write
    mov al, byte ptr [1]        ; MMIO read, completed by the VMM
    mov word ptr [2], 0x1234
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov si, 0x500
    mov cx, 3
    mov dx, 0x82
    rep outsb                   ; REP OUTS: one exit per element
    mov di, 0x600
    mov cx, 2
    rep insb                    ; REP INS: one exit per element, completed by the VMM
    mov cx, 0x40
1:  out 0x83, al
    inc al
    loop 1b
    hlt
    out 0x84, al
    jmp 1b
"""


COALESCED = """.code16
    mov ax, 0x2000
    mov ds, ax
    mov cx, 400
1:  mov byte ptr [0], al        ; coalesced: exits only when the ring is full
    mov word ptr [0x10], cx
    inc al
    loop 1b
    mov byte ptr [0x1000], al   ; outside the zone
    out 0x80, al
    jmp 1b
"""


def _vcpu(src=GUEST, zone=False, trace=False):
    kvm = kvmlab.open("sim")
    vm = kvm.create_vm()
    mem = kvmlab.GuestMemory(0x10000)
    vm.set_user_memory_region(0, 0, mem)
    if zone:
        vm.register_coalesced_mmio(0x20000, 0x1000)
    if trace:
        kvm.backend.trace(vm.fd).enable()
    mem.write(0x1000, assemble(src, base=0x1000).code)
    mem.write(0x500, b"abc")
    v = vm.create_vcpu(0)
    s = v.get_sregs()
    for seg in (s.cs, s.ds, s.es, s.ss):
        seg.base, seg.selector = 0, 0
    v.set_sregs(s)
    v.set_regs(rip=0x1000, rflags=2, rsp=0x8000)
    return kvm, vm, mem, v


def _regs(v):
    r = v.get_regs()
    return tuple(getattr(r, f) for f, _ in type(r)._fields_)


def _trace(steps=120, poke=None, src=GUEST, zone=False, trace=False, drain_every=1):
    """Run a guest, completing every IN / MMIO read; after each exit record the kvm_run page,
    the PIO data page's head, the coalesced ring page, the registers and the stats."""
    kvm, vm, mem, v = _vcpu(src, zone, trace)
    out = []
    for i in range(steps):
        if poke:
            poke(i, v)
        try:
            e = v.run()
        except kvmlab.KvmError as err:
            e = err.errno
        page = bytes(v._page[:4096])
        decoded = kvmlab.exits.decode(v._page)
        if not isinstance(e, int) and e.reason != kvmlab.KVM_EXIT_INTR:
            # VcpuFd.run's inline decode is exits.decode
            assert type(e) is type(decoded) and e.fields() == decoded.fields()
        ring = bytes(v._page[8192:12288])
        if i % drain_every == 0:
            v.coalesced_ring.drain_array()
        out.append((i, page, bytes(v._page[4096:4096 + 64]), ring, _regs(v), v.stats(),
                    repr(e)))
        if isinstance(e, kvmlab.exits.IoExit) and e.is_in:
            e.complete(0x40 + i)
        elif isinstance(e, kvmlab.exits.MmioExit) and not e.is_write:
            e.complete(bytes(range(i, i + e.len)))
    v.close()
    vm.close()
    return out


def _compare(monkeypatch, **kw):
    fast = _trace(**kw)
    traced = _trace(trace=True, **kw)
    monkeypatch.setattr(x86_run, "FAST_PATH", False)
    slow = _trace(**kw)
    assert len(fast) == len(slow) == len(traced)
    for a, b, c in zip(fast, slow, traced):
        assert a == b, f"step {a[0]}: {a[-1]} vs {b[-1]}"
        assert a == c, f"step {a[0]}: {a[-1]} vs {c[-1]} (traced)"


def test_every_exit_of_the_fast_path_matches_the_general_path_byte_for_byte(monkeypatch):
    _compare(monkeypatch)


@pytest.mark.parametrize("drain_every", [1, 3])
def test_a_write_into_a_full_coalesced_ring_exits_the_same_way_on_every_path(monkeypatch,
                                                                             drain_every):
    _compare(monkeypatch, src=COALESCED, zone=True, steps=40, drain_every=drain_every)


def test_immediate_exit_interrupt_windows_and_sync_regs_take_the_general_path(monkeypatch):
    def poke(i, v):
        if i % 7 == 3:
            v.immediate_exit = 1
        elif i % 7 == 4:
            v.immediate_exit = 0
        if i % 11 == 5:
            v.request_interrupt_window = 1
        elif i % 11 == 6:
            v.request_interrupt_window = 0
        if i % 13 == 8:
            v.kvm_run.kvm_valid_regs = 1      # KVM_SYNC_X86_REGS
        elif i % 13 == 9:
            v.kvm_run.kvm_valid_regs = 0
    _compare(monkeypatch, poke=poke)


def test_the_plain_exit_round_trip_does_not_go_through_the_general_path(monkeypatch):
    kvm, vm, mem, v = _vcpu(".code16\n1: out 0x80, al\n jmp 1b\n")
    v.run()                                   # the first entry runs the VM-entry checks
    calls = []
    general = x86_run._run
    monkeypatch.setattr(x86_run, "_run", lambda self: calls.append(1) or general(self))
    for _ in range(100):
        assert v.run().reason == kvmlab.KVM_EXIT_IO
    assert calls == []
    v.immediate_exit = 1                      # ... but anything unusual does
    with pytest.raises(InterruptedError):     # EINTR from KVM_RUN itself
        v._ioctl_fn(v.fd, 0xAE80, 0)
    assert calls == [1]
    v.immediate_exit = 0
    assert v.stats()["io_exits"] == 101


def test_a_plain_entry_runs_nothing_when_kvm_run_asks_for_more_than_an_entry():
    kvm, vm, mem, v = _vcpu(".code16\n1: out 0x80, al\n jmp 1b\n")
    v.run()
    arch = kvm.backend.vcpu_of(v.fd).arch
    rip = v.get_regs().rip
    for off in (0, 1, 288, 295, 296, 303):
        v._page[off] = 1
        assert KR.enter_ctx(arch.ctx_addr, 1000, 0, 1) == (KR.NOT_ENTERED, KR.FAST_SLOW)
        v._page[off] = 0
    assert v.get_regs().rip == rip
    code, r = KR.enter_ctx(arch.ctx_addr, 1000, 0, 1)
    assert (code, r) == (KR.KVM_EXIT_IO, KR.FAST_USER)


def test_make_ctx_refuses_arrays_the_compiled_code_cannot_take():
    st, pm, lay = np.zeros(8, np.int64), np.zeros(8, np.int64), np.zeros(8, np.int64)
    page = np.zeros(16, np.uint8)
    ctx = KR.make_ctx(st, pm, page, lay)
    assert list(ctx) == [st.ctypes.data, 8, pm.ctypes.data, 8, page.ctypes.data, 16,
                         lay.ctypes.data, 8]
    with pytest.raises(ValueError):
        KR.make_ctx(st.astype(np.int32), pm, page, lay)
    with pytest.raises(ValueError):
        KR.make_ctx(st[::2], pm, page, lay)


def test_drain_array_gives_the_ring_entries_in_order_also_across_the_wrap():
    from kvmlab.vcpu import CoalescedRing, COALESCED_DTYPE
    import struct
    buf = bytearray(3 * 4096)
    for i in range(170):
        struct.pack_into("<QII8s", buf, 8192 + 8 + 24 * i, 0x20000 + i, 1 + i % 8, i & 1,
                         bytes([i]) * 8)
    ring = CoalescedRing(memoryview(buf))
    for first, last in ((0, 169), (100, 99), (5, 9), (169, 3), (7, 7), (0, 170)):
        struct.pack_into("<II", buf, 8192, first, last)
        want = ring.entries
        got = ring.drain_array()
        assert got.dtype == COALESCED_DTYPE
        assert [(int(e["phys_addr"]), int(e["len"]), int(e["pio"]), bytes(e["data"]))
                for e in got] == [(w.phys_addr, w.len, w.pio, w.data) for w in want]
        assert ring.first == (last if first != last and last < 170 else first)
    ring._release()


def test_drain_and_entries_give_the_entries_one_by_one_in_ring_order():
    from kvmlab.vcpu import CoalescedRing, CoalescedWrite
    import struct
    buf = bytearray(3 * 4096)
    for i in range(170):
        struct.pack_into("<QII8s", buf, 8192 + 8 + 24 * i, 0x20000 + i, 1 + i % 8, i & 1,
                         bytes([i]) * 8)
    ring = CoalescedRing(memoryview(buf))
    for first, last in ((0, 169), (100, 99), (5, 9), (169, 3), (7, 7), (0, 170), (200, 5),
                        (171, 180)):
        struct.pack_into("<II", buf, 8192, first, last)
        n = (last - first) % 170 if last < 170 else 0
        want = [CoalescedWrite(*struct.unpack_from("<QII8s", buf, 8192 + 8 + 24 * (i % 170)))
                for i in range(first, first + n)]
        assert ring.entries == want
        assert [ring.entry(i) for i in range(first, first + n)] == want
        assert ring.drain() == (want if first != last else [])
        assert ring.first == (last if first != last and last < 170 else first)
