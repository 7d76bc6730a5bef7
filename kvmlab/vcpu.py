"""``VcpuFd``: a vCPU file descriptor (what KVM_CREATE_VCPU returns), its ioctls and its mmap.

The vCPU fd's mmap is three pages: ``struct kvm_run`` (page 0), the PIO data page (page 1)
and the VM's coalesced MMIO ring (page 2).  ``run()`` issues KVM_RUN and decodes the exit
from page 0.
"""
from __future__ import annotations

import errno
import struct
import threading
from dataclasses import dataclass

import numpy as np

from . import exits, uapi
from .binstats import StatsFile
from .errors import KvmError

PAGE = 4096
_get_ident = threading.get_ident
_decoder = exits._DECODERS.get          # exit reason -> Exit class (exits.decode's table)
_Exit = exits.Exit
RING_MAX = 170   # KVM_COALESCED_MMIO_MAX: (4096 - 8) / 24
_ENTRY = struct.Struct("<QII8s")
_HEAD = struct.Struct("<II")     # first, last
_U32 = struct.Struct("<I")
#: struct kvm_coalesced_mmio as a numpy dtype (24 bytes)
COALESCED_DTYPE = np.dtype([("phys_addr", "<u8"), ("len", "<u4"), ("pio", "<u4"), ("data", "u1", (8,))])


@dataclass(frozen=True)
class CoalescedWrite:
    """One entry of the coalesced MMIO/PIO ring: a guest write KVM recorded instead of exiting."""
    phys_addr: int
    len: int
    pio: int
    data: bytes

    @property
    def value(self) -> int:
        return int.from_bytes(self.data[:self.len], "little")

    def __repr__(self) -> str:
        kind = "PIO" if self.pio else "MMIO"
        return f"CoalescedWrite({kind} {self.phys_addr:#x} len={self.len} data={self.data[:self.len].hex()})"


class CoalescedRing:
    """A view of ``struct kvm_coalesced_mmio_ring`` (page 2 of the vCPU mmap).

    KVM writes entry ``last`` and advances ``last``; userspace consumes from ``first`` and
    advances ``first``.  It holds 170 slots, so at most 169 entries are outstanding."""

    def __init__(self, buf, offset: int = 2 * PAGE):
        self._buf = buf
        self._off = offset
        self._raw = None        # the 170 entries as uint8 (made at the first drain_array)

    @property
    def first(self) -> int:
        return struct.unpack_from("<I", self._buf, self._off)[0]

    @first.setter
    def first(self, value: int) -> None:
        struct.pack_into("<I", self._buf, self._off, value)

    @property
    def last(self) -> int:
        return struct.unpack_from("<I", self._buf, self._off + 4)[0]

    def __len__(self) -> int:
        return (self.last - self.first) % RING_MAX

    def entry(self, i: int) -> CoalescedWrite:
        return CoalescedWrite(*_ENTRY.unpack_from(self._buf, self._off + 8 + 24 * (i % RING_MAX)))

    def _records(self, first: int, last: int) -> list[CoalescedWrite]:
        """Entries ``first``, ``first + 1``, ... (mod 170), ``(last - first) % 170`` of them:
        one copy of their bytes, unpacked in one go."""
        n = (last - first) % RING_MAX
        start = first % RING_MAX
        base = self._off + 8
        end = start + n
        buf = self._buf
        if end <= RING_MAX:
            raw = bytes(buf[base + 24 * start:base + 24 * end])
        else:
            raw = bytes(buf[base + 24 * start:base + 24 * RING_MAX]) + \
                bytes(buf[base:base + 24 * (end - RING_MAX)])
        return [CoalescedWrite(*t) for t in _ENTRY.iter_unpack(raw)]

    @property
    def entries(self) -> list[CoalescedWrite]:
        """The outstanding entries, oldest first (without consuming them)."""
        first, last = _HEAD.unpack_from(self._buf, self._off)
        if last >= RING_MAX:
            return []
        return self._records(first, last)

    def drain(self) -> list[CoalescedWrite]:
        """Consume the outstanding entries (oldest first) and advance ``first``, as a VMM
        must do after every return from KVM_RUN, before handling the exit."""
        first, last = _HEAD.unpack_from(self._buf, self._off)
        if first == last or last >= RING_MAX:
            return []
        out = self._records(first, last)
        self.first = last
        return out

    def drain_array(self) -> np.ndarray:
        """Like :meth:`drain`, but the entries come as one numpy array of
        :data:`COALESCED_DTYPE` records (fields ``phys_addr``, ``len``, ``pio``, ``data``):
        a VMM that handles thousands of writes per exit stays fast."""
        first, last = _HEAD.unpack_from(self._buf, self._off)
        if first == last or last >= RING_MAX:
            return np.empty(0, COALESCED_DTYPE)
        raw = self._raw
        if raw is None:
            raw = self._raw = np.frombuffer(self._buf, np.uint8, count=24 * RING_MAX,
                                            offset=self._off + 8)
        # copy bytes, then view them as records (a structured concatenate is ~10x slower)
        if first < last:
            out = raw[24 * first:24 * last].copy()
        else:
            out = np.concatenate((raw[24 * first:], raw[:24 * last]))
        _U32.pack_into(self._buf, self._off, last)
        return out.view(COALESCED_DTYPE)

    def _release(self) -> None:
        """Drop the numpy view of the mapping (before the vCPU fd unmaps it)."""
        self._raw = None

    def __repr__(self) -> str:
        return f"<CoalescedRing first={self.first} last={self.last} outstanding={len(self)}>"


@dataclass(frozen=True)
class Translation:
    """KVM_TRANSLATE's answer (KVM always reports writeable=1, usermode=0)."""
    linear_address: int
    physical_address: int
    valid: bool
    writeable: bool
    usermode: bool

    def __repr__(self) -> str:
        if not self.valid:
            return f"Translation({self.linear_address:#x} -> not mapped)"
        return f"Translation({self.linear_address:#x} -> {self.physical_address:#x})"


class VcpuFd:
    """A vCPU.  Create it with ``VmFd.create_vcpu(id)``."""

    def __init__(self, vm, fd: int, vcpu_id: int):
        self.vm = vm
        self.backend = vm.backend
        self.fd = fd
        self.id = vcpu_id
        self._mmap = self.backend.mmap(fd, vm.kvm.vcpu_mmap_size, 0)
        self._page = memoryview(self._mmap).cast("B") if not isinstance(self._mmap, memoryview) else self._mmap
        self.kvm_run = uapi.kvm_run.from_buffer(self._mmap)
        self._u32 = self._page[:PAGE].cast("I")       # kvm_run as u32 words (exit_reason: [2])
        self.coalesced_ring = CoalescedRing(self._page)
        self._ioctl_fn = self.backend.ioctl
        self._thread = None
        self._kicked = False
        self._stats = None

    def _ioctl(self, name, request, arg=0):
        try:
            return self._ioctl_fn(self.fd, request, arg)
        except OSError as e:
            raise KvmError(e.errno, name) from None

    # KVM_RUN -----------------------------------------------------------------------
    def run(self) -> exits.Exit:
        """KVM_RUN on the vCPU fd: run the guest until KVM needs userspace; returns the exit.

        A signal, :meth:`kick` or ``immediate_exit`` gives an ``INTR`` exit; Ctrl-C raises
        KeyboardInterrupt.  Complete an IN / MMIO read with ``exit.complete(value)`` before
        the next ``run()``.  An ``EAGAIN`` from KVM_RUN (an AP that INIT/SIPI just woke)
        is retried here, as QEMU does.
        """
        self._thread = _get_ident()
        try:
            self._ioctl_fn(self.fd, 0xAE80, 0)  # KVM_RUN
        except OSError as e:
            intr = self._run_failed(e)
            if intr is not None:
                return intr
        finally:
            self._thread = None
        # exits.decode(page), with exit_reason read through a u32 view of the page
        page = self._page
        reason = self._u32[2]
        e = _decoder(reason, _Exit)(reason, page)
        if reason == 9:     # KVM_EXIT_FAIL_ENTRY: the simulator can say which rule was broken
            rule = getattr(self.backend, "entry_failure_rule", None)
            e.explanation = rule(self.fd) if rule else None
        return e

    def _run_failed(self, e):
        """KVM_RUN failed with ``e``: retry on EAGAIN (then None: the exit is in the page),
        an INTR exit on EINTR, else raise KvmError."""
        while True:
            if e.errno == errno.EAGAIN:     # an AP woke from INIT/SIPI: enter again, as QEMU does
                try:
                    self._ioctl_fn(self.fd, 0xAE80, 0)
                    return None
                except OSError as again:
                    e = again
                    continue
            if e.errno == errno.EINTR:
                if self._kicked:            # the kick's immediate_exit has done its job
                    self._kicked = False
                    self._page[1] = 0
                return exits.intr(self._page)
            raise KvmError(e.errno, "KVM_RUN") from None

    def kick(self) -> None:
        """Make a ``run()`` in another thread return soon with an INTR exit (sets
        ``immediate_exit`` and interrupts KVM_RUN, as QEMU's vCPU kick does; ``run()``
        clears ``immediate_exit`` again when it returns that INTR exit)."""
        self._kicked = True
        self.immediate_exit = 1
        t = self._thread
        kick = getattr(self.backend, "kick", None)
        if t is not None and kick is not None:
            kick(t) if self.backend.name == "hw" else kick(self.fd)

    @property
    def immediate_exit(self) -> int:
        """kvm_run.immediate_exit: if set, KVM_RUN returns EINTR at once (after completing a
        pending IN/MMIO read)."""
        return self._page[1]

    @immediate_exit.setter
    def immediate_exit(self, value: int) -> None:
        self._page[1] = int(bool(value))

    @property
    def request_interrupt_window(self) -> int:
        """kvm_run.request_interrupt_window: ask for an IRQ_WINDOW_OPEN exit as soon as the
        guest can take an interrupt (no in-kernel LAPIC)."""
        return self._page[0]

    @request_interrupt_window.setter
    def request_interrupt_window(self, value: int) -> None:
        self._page[0] = int(bool(value))

    # registers ---------------------------------------------------------------------
    def get_regs(self):
        """KVM_GET_REGS on the vCPU fd: the general registers (``kvm_regs``)."""
        regs = uapi.kvm_regs()
        self._ioctl("KVM_GET_REGS", uapi.KVM_GET_REGS, regs)
        return regs

    def set_regs(self, regs=None, **fields) -> None:
        """KVM_SET_REGS on the vCPU fd.  Pass a ``kvm_regs``, or fields to change
        (``set_regs(rip=0x1000, rsp=0x8000)`` reads, changes and writes back)."""
        if regs is None:
            regs = self.get_regs()
        for k, v in fields.items():
            if not hasattr(regs, k):
                raise AttributeError(f"kvm_regs has no field {k!r}")
            setattr(regs, k, v)
        self._ioctl("KVM_SET_REGS", uapi.KVM_SET_REGS, regs)

    def get_sregs(self):
        """KVM_GET_SREGS on the vCPU fd: segment, descriptor-table and control registers."""
        sregs = uapi.kvm_sregs()
        self._ioctl("KVM_GET_SREGS", uapi.KVM_GET_SREGS, sregs)
        return sregs

    def set_sregs(self, sregs) -> None:
        """KVM_SET_SREGS on the vCPU fd."""
        self._ioctl("KVM_SET_SREGS", uapi.KVM_SET_SREGS, sregs)

    def get_fpu(self):
        """KVM_GET_FPU on the vCPU fd (``kvm_fpu``)."""
        fpu = uapi.kvm_fpu()
        self._ioctl("KVM_GET_FPU", uapi.KVM_GET_FPU, fpu)
        return fpu

    def get_msrs(self, indices) -> dict[int, int]:
        """KVM_GET_MSRS on the vCPU fd: ``{index: value}`` for the MSRs read.  KVM stops at the
        first MSR it cannot read, so missing indices are unknown to it."""
        indices = list(indices)
        buf = uapi.kvm_msrs_with(len(indices))
        buf.nmsrs = len(indices)
        for i, idx in enumerate(indices):
            buf.entries[i].index = idx
        n = self._ioctl("KVM_GET_MSRS", uapi.KVM_GET_MSRS, buf)
        return {int(buf.entries[i].index): int(buf.entries[i].data) for i in range(n)}

    def set_msrs(self, values: dict[int, int]) -> int:
        """KVM_SET_MSRS on the vCPU fd: returns how many were written (KVM stops at the first
        MSR or value it rejects)."""
        items = list(values.items())
        buf = uapi.kvm_msrs_with(len(items))
        buf.nmsrs = len(items)
        for i, (idx, val) in enumerate(items):
            buf.entries[i].index = idx
            buf.entries[i].data = val & (2**64 - 1)
        return self._ioctl("KVM_SET_MSRS", uapi.KVM_SET_MSRS, buf)

    def set_cpuid2(self, entries) -> None:
        """KVM_SET_CPUID2 on the vCPU fd: what the guest's CPUID returns (without it, zeros).
        ``entries`` is a list of ``kvm_cpuid_entry2``, e.g. ``kvm.get_supported_cpuid()``."""
        entries = list(entries)
        buf = uapi.kvm_cpuid2_with(len(entries))
        buf.nent = len(entries)
        for i, e in enumerate(entries):
            buf.entries[i] = e
        self._ioctl("KVM_SET_CPUID2", uapi.KVM_SET_CPUID2, buf)

    def get_cpuid2(self, max_entries: int = 256) -> list:
        """KVM_GET_CPUID2 on the vCPU fd: the table set by KVM_SET_CPUID2."""
        buf = uapi.kvm_cpuid2_with(max_entries)
        buf.nent = max_entries
        self._ioctl("KVM_GET_CPUID2", uapi.KVM_GET_CPUID2, buf)
        return [uapi.kvm_cpuid_entry2.from_buffer_copy(buf.entries[i]) for i in range(buf.nent)]

    def translate(self, linear_address: int) -> Translation:
        """KVM_TRANSLATE on the vCPU fd: walk the guest's page tables for a linear address."""
        t = uapi.kvm_translation(linear_address=linear_address & (2**64 - 1))
        self._ioctl("KVM_TRANSLATE", uapi.KVM_TRANSLATE, t)
        return Translation(int(t.linear_address), int(t.physical_address), bool(t.valid),
                           bool(t.writeable), bool(t.usermode))

    def set_guest_debug(self, enable: bool = True, *, singlestep: bool = False, sw_bp: bool = False,
                        hw_bp: bool = False, inject_db: bool = False, inject_bp: bool = False,
                        debugreg=None, control: int | None = None) -> None:
        """KVM_SET_GUEST_DEBUG on the vCPU fd: single-step, software breakpoints (int3),
        hardware breakpoints/watchpoints (``debugreg[0..3]`` addresses, ``debugreg[7]`` DR7)."""
        if control is None:
            control = 0
            if enable:
                control |= uapi.KVM_GUESTDBG_ENABLE
            if singlestep:
                control |= uapi.KVM_GUESTDBG_SINGLESTEP
            if sw_bp:
                control |= uapi.KVM_GUESTDBG_USE_SW_BP
            if hw_bp:
                control |= uapi.KVM_GUESTDBG_USE_HW_BP
            if inject_db:
                control |= uapi.KVM_GUESTDBG_INJECT_DB
            if inject_bp:
                control |= uapi.KVM_GUESTDBG_INJECT_BP
        dbg = uapi.kvm_guest_debug(control=control)
        for i, v in enumerate(debugreg or ()):
            dbg.arch.debugreg[i] = v
        self._ioctl("KVM_SET_GUEST_DEBUG", uapi.KVM_SET_GUEST_DEBUG, dbg)

    def interrupt(self, vector: int) -> None:
        """KVM_INTERRUPT on the vCPU fd: queue an external interrupt (no in-kernel irqchip).
        KVM injects it at the next entry even if IF=0: wait for ``ready_for_interrupt_injection``."""
        self._ioctl("KVM_INTERRUPT", uapi.KVM_INTERRUPT, uapi.kvm_interrupt(irq=vector & 0xFFFFFFFF))

    def nmi(self) -> None:
        """KVM_NMI on the vCPU fd: queue a non-maskable interrupt (vector 2)."""
        self._ioctl("KVM_NMI", uapi.KVM_NMI)

    def get_mp_state(self) -> int:
        """KVM_GET_MP_STATE on the vCPU fd: 0 RUNNABLE, 1 UNINITIALIZED, 2 INIT_RECEIVED, 3 HALTED, 4 SIPI_RECEIVED."""
        st = uapi.kvm_mp_state()
        self._ioctl("KVM_GET_MP_STATE", uapi.KVM_GET_MP_STATE, st)
        return int(st.mp_state)

    def set_mp_state(self, state: int) -> None:
        """KVM_SET_MP_STATE on the vCPU fd."""
        self._ioctl("KVM_SET_MP_STATE", uapi.KVM_SET_MP_STATE, uapi.kvm_mp_state(mp_state=state))

    def get_debugregs(self):
        """KVM_GET_DEBUGREGS on the vCPU fd (DR0-3, DR6, DR7)."""
        d = uapi.kvm_debugregs()
        self._ioctl("KVM_GET_DEBUGREGS", uapi.KVM_GET_DEBUGREGS, d)
        return d

    def set_debugregs(self, db=(0, 0, 0, 0), dr6: int = 0xFFFF0FF0, dr7: int = 0x400) -> None:
        """KVM_SET_DEBUGREGS on the vCPU fd: the guest's own DR0-3, DR6 and DR7."""
        d = uapi.kvm_debugregs()
        for i, v in enumerate(db):
            d.db[i] = v
        d.dr6, d.dr7 = dr6, dr7
        self._ioctl("KVM_SET_DEBUGREGS", uapi.KVM_SET_DEBUGREGS, d)

    def get_lapic(self) -> bytes:
        """KVM_GET_LAPIC on the vCPU fd: the 1 KiB local APIC register page (irqchip only)."""
        s = uapi.kvm_lapic_state()
        self._ioctl("KVM_GET_LAPIC", uapi.KVM_GET_LAPIC, s)
        return bytes(s)

    def get_vcpu_events(self):
        """KVM_GET_VCPU_EVENTS on the vCPU fd: pending exception/interrupt/NMI state."""
        ev = uapi.kvm_vcpu_events()
        self._ioctl("KVM_GET_VCPU_EVENTS", uapi.KVM_GET_VCPU_EVENTS, ev)
        return ev

    def stats(self) -> dict:
        """KVM_GET_STATS_FD on the vCPU fd, decoded: stat name -> value."""
        if self._stats is None:
            fd = self._ioctl("KVM_GET_STATS_FD", uapi.KVM_GET_STATS_FD)
            self._stats = StatsFile(self.backend, fd)
        return self._stats.read()

    @property
    def hardware_exit_code(self):
        """The vendor exit code (VMX exit reason / SVM exit code) of the last exit.
        Simulated backend only; None on hardware, where KVM does not report it."""
        f = getattr(self.backend, "hardware_exit_code", None)
        return f(self.fd) if f else None

    def close(self) -> None:
        """close() the vCPU fd (and unmap its kvm_run page)."""
        if self._stats is not None:
            self._stats.close()
            self._stats = None
        if self.fd is None:
            return
        self.kvm_run = None
        if self.coalesced_ring is not None:
            self.coalesced_ring._release()
        self.coalesced_ring = None
        try:
            self._u32.release()
        except (AttributeError, ValueError, BufferError):
            pass
        self._u32 = None
        try:
            self._page.release()
        except (AttributeError, ValueError, BufferError):
            pass
        self._page = None
        close_map = getattr(self._mmap, "close", None)
        if close_map is not None:
            try:
                close_map()
            except BufferError:
                pass
        self.backend.close(self.fd)
        self.fd = None
        self.vm.vcpus.pop(self.id, None)

    def __repr__(self) -> str:
        return f"<VcpuFd id={self.id} backend={self.backend.name!r}>"
