"""``Machine``: a small kvmtool -- a VM with RAM, vCPUs in the mode you ask for, devices,
a guest loader and the exit loop.

>>> from kvmlab import asm
>>> from kvmlab.vmm import Machine
>>> prog = asm.assemble('''
... .code16
... _start: mov dx, 0x3f8
...         mov al, 'k'
...         out dx, al
...         hlt
... ''', base=0x1000)
>>> with Machine(mode="real", backend="auto") as m:
...     m.load(prog)
...     result = m.run()
>>> result.console, result.stop_reason, result.exit_counts
('k', 'hlt', {'IO': 1, 'HLT': 1})

What it does, in KVM API order (reference §16): open KVM, KVM_CREATE_VM,
KVM_SET_TSS_ADDR (0xFEFFD000) and KVM_SET_IDENTITY_MAP_ADDR (0xFEFFC000) as QEMU does
(they matter only on Intel VMX), KVM_CREATE_IRQCHIP if asked (before any vCPU), RAM as
memslot 0 at guest-physical 0, KVM_CREATE_VCPU, KVM_SET_CPUID2 with what
KVM_GET_SUPPORTED_CPUID offers, then KVM_SET_SREGS for the mode (GDT and page tables
are written into guest RAM first, see :mod:`kvmlab.vmm.modes`).

Stack convention: :meth:`Machine.load` sets ``rsp`` to ``stack`` (default 0x8000; in real
mode SS=0, so SS:SP = 0000:8000) and ``rflags`` to 0x2 (interrupts off).  The stack
grows down towards the image at 0x1000, so images up to 28 KiB fit below it.

Devices: 16550 serial at 0x3F8 (the console), debug-exit at 0xF4, debug console at 0xE9,
scratch registers at ports 0x510-0x51F and at MMIO 0xD0000000-0xD0000FFF, and a VGA text
view of RAM at 0xB8000.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field

import kvmlab
from .. import asm, uapi
from ..memory import GuestMemory
from ..uapi import ExitReason
from . import modes
from .bus import Buses
from .devices import Console, DebugCon, DebugExit, Scratch, Serial16550, VgaText
from .devices import debugcon as _debugcon
from .devices import debugexit as _debugexit
from .devices import scratch as _scratch
from .devices import serial as _serial
from .devices import vga as _vga
from .exitloop import drain_ring, handle_exit
from .guest import parse_header
from .state import regs_dict, sregs_dict

MiB = 1 << 20
TSS_ADDR = 0xFEFFD000            # QEMU's KVM_SET_TSS_ADDR
IDENTITY_MAP_ADDR = 0xFEFFC000   # QEMU's KVM_SET_IDENTITY_MAP_ADDR
DEFAULT_STACK = 0x8000
DEFAULT_MEMORY = 2 * MiB


@dataclass
class RunResult:
    """What :meth:`Machine.run` returns.

    ``stop_reason``: ``debug_exit`` (``status`` is the code), ``hlt``, ``shutdown``,
    ``internal_error``, ``fail_entry``, ``debug``, ``unknown``, ``system_event``,
    ``max_exits`` or ``timeout``.  ``exits`` holds one record per KVM_RUN return
    (``{"reason": "IO", ...fields}``), ``exit_counts`` counts them by reason,
    ``coalesced`` lists the ring entries drained, ``ioeventfds`` how often each
    ioeventfd fired."""
    backend: str
    stop_reason: str
    status: int | None
    console: str
    exits: list
    exit_counts: dict
    regs: dict
    sregs: dict
    memory_sha256: str
    coalesced: list = field(default_factory=list)
    ioeventfds: dict = field(default_factory=dict)
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        """True if the guest wrote 0 to the debug-exit port."""
        return self.stop_reason == "debug_exit" and self.status == 0

    def to_dict(self) -> dict:
        """Everything except ``elapsed`` (so equal runs give equal dicts)."""
        d = asdict(self)
        d.pop("elapsed")
        return d

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), **kw)

    def summary(self) -> str:
        """One line: why it stopped and the exit counts."""
        counts = ", ".join(f"{k} {v}" for k, v in self.exit_counts.items()) or "none"
        why = self.stop_reason + (f" (status {self.status})" if self.status is not None else "")
        return f"stopped: {why}; exits: {counts}; rip={self.regs.get('rip', 0):#x}"


class Machine:
    """A VM ready to run a guest.

    ``mode``: "real", "protected" or "long".  ``memory``: RAM bytes at guest-physical 0
    (slot 0).  ``vcpus``: how many vCPUs to create (``run`` runs vCPU 0).  ``backend``:
    ``None`` (``$KVMLAB_BACKEND`` or sim), "sim", "hw" or "auto".  ``irqchip``: create the
    in-kernel PIC/IOAPIC/LAPIC.  ``gib``: GiB identity-mapped in long mode.
    ``stop_on_hlt``: end the run at a HLT exit (else resume the guest after it).
    ``echo``: a callable that sees console text as it is printed (e.g. sys.stdout.write).
    """

    def __init__(self, mode: str = "real", memory: int = DEFAULT_MEMORY, vcpus: int = 1,
                 backend: str | None = None, irqchip: bool = False, *, gib: int = 4,
                 stop_on_hlt: bool = True, echo=None, kvm=None):
        if mode not in modes.MODES:
            raise ValueError(f"unknown mode {mode!r}: use 'real', 'protected' or 'long'")
        if vcpus < 1:
            raise ValueError("a Machine needs at least one vCPU")
        need = modes.PML4_BASE + modes.page_table_size(gib) if mode == "long" else 0x1000
        if memory < need:
            raise ValueError(f"{mode} mode needs at least {need:#x} bytes of RAM (the page tables "
                             f"end there); got memory={memory:#x}")
        self.mode = mode
        self.gib = gib
        self.stop_on_hlt = stop_on_hlt
        self.kvm = kvm if kvm is not None else kvmlab.open(backend)
        self.backend = self.kvm.backend_name
        self.vm = self.kvm.create_vm()
        self.vcpus: list = []
        self._eventfds: list[int] = []
        self._closed = False
        try:
            self._build(memory, vcpus, irqchip, echo)
        except BaseException:
            self.close()
            raise

    def _build(self, memory, vcpus, irqchip, echo):
        vm = self.vm
        vm.set_tss_addr(TSS_ADDR)
        vm.set_identity_map_addr(IDENTITY_MAP_ADDR)
        self.irqchip = bool(irqchip)
        if irqchip:
            vm.create_irqchip()
        self.memory = GuestMemory(memory)
        vm.set_user_memory_region(0, 0, self.memory)
        self.regions: list[tuple[int, GuestMemory, bool]] = [(0, self.memory, False)]   # (gpa, mem, readonly)
        self.ioeventfds: dict[str, int] = {}
        self._ioevent_counts: dict[str, int] = {}
        self.irqfds: dict[int, int] = {}
        self._irq_schedule: list[tuple[float, int]] = []
        self.program = None
        self._breakpoints: dict[int, list[int]] = {}

        self.console = Console(echo)
        self.buses = Buses()
        self.serial = Serial16550(self.console)
        self.debug_exit = DebugExit()
        self.debugcon = DebugCon(self.console)
        self.scratch = Scratch(_scratch.MMIO_SIZE, "scratch-mmio")
        self.scratch_pio = Scratch(_scratch.PIO_SIZE, "scratch-pio")
        self.buses.pio.register(_serial.COM1, 8, self.serial)
        self.buses.pio.register(_debugexit.PORT, 1, self.debug_exit)
        self.buses.pio.register(_debugcon.PORT, 1, self.debugcon)
        self.buses.pio.register(_scratch.PIO_BASE, _scratch.PIO_SIZE, self.scratch_pio)
        self.buses.mmio.register(_scratch.MMIO_BASE, _scratch.MMIO_SIZE, self.scratch)
        self.vga = VgaText(self.memory) if memory >= _vga.BASE + 2 * _vga.COLUMNS * _vga.ROWS else None

        cr3 = 0
        if self.mode != "real":
            modes.write_gdt(self.memory)
        if self.mode == "long":
            cr3 = modes.write_page_tables(self.memory, self.gib)
        self.system_ranges = self._system_ranges()

        cpuid = self.kvm.get_supported_cpuid()
        for i in range(vcpus):
            vcpu = vm.create_vcpu(i)
            self.vcpus.append(vcpu)
            vcpu.set_cpuid2(_with_apic_id(cpuid, i))
            sregs = modes.set_mode(vcpu.get_sregs(), self.mode, cr3)
            vcpu.set_sregs(sregs)
            vcpu.set_regs(rsp=DEFAULT_STACK, rflags=0x2)

    def _system_ranges(self) -> list[tuple[int, int, str]]:
        out = []
        if self.mode != "real":
            out.append((modes.GDT_BASE, modes.TSS_BASE + modes.TSS_LIMIT + 1, "the GDT and TSS"))
        if self.mode == "long":
            out.append((modes.PML4_BASE, modes.PML4_BASE + modes.page_table_size(self.gib), "the page tables"))
        return out

    # ---------------------------------------------------------------- building blocks
    @property
    def vcpu(self):
        """vCPU 0 (the one ``run`` runs)."""
        return self.vcpus[0]

    @property
    def pio(self):
        return self.buses.pio

    @property
    def mmio(self):
        return self.buses.mmio

    def add_rom(self, gpa: int, size: int, data: bytes = b"") -> GuestMemory:
        """A KVM_MEM_READONLY slot at ``gpa`` holding ``data`` (then zeros).  Guest reads
        and instruction fetches are served from it; every guest write is an MMIO exit
        and leaves it unchanged."""
        for base, mem, _ in self.regions:
            if gpa < base + mem.size and base < gpa + size:
                raise ValueError(f"ROM {gpa:#x}-{gpa + size - 1:#x} overlaps guest memory at "
                                 f"{base:#x}-{base + mem.size - 1:#x}: put it above the RAM "
                                 f"(or make memory= smaller)")
        mem = GuestMemory(size)
        if data:
            mem.write(0, data[:size])
        self.vm.set_user_memory_region(len(self.regions), gpa, mem, flags=uapi.KVM_MEM_READONLY)
        self.regions.append((gpa, mem, True))
        return mem

    def coalesce(self, addr: int, size: int, pio: bool = False) -> None:
        """Register a coalesced MMIO (or PIO) zone: guest writes there go to the ring,
        which ``run`` drains to the devices after every exit."""
        self.vm.register_coalesced_mmio(addr, size, pio=pio)

    def add_ioeventfd(self, addr: int, length: int, pio: bool = False, datamatch: int | None = None) -> str:
        """An ioeventfd: matching guest writes signal an eventfd inside the kernel, with no
        exit.  Returns its name (``"pio:0x520+1"``), the key in ``RunResult.ioeventfds``."""
        efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._eventfds.append(efd)
        name = f"{'pio' if pio else 'mmio'}:{addr:#x}+{length}" + (f":{datamatch:#x}" if datamatch is not None else "")
        self.vm.ioeventfd(efd, addr, length, pio=pio, datamatch=datamatch)
        self.ioeventfds[name] = efd
        self._ioevent_counts[name] = 0
        return name

    def ioeventfd_counts(self) -> dict[str, int]:
        """How often each ioeventfd fired so far."""
        for name, efd in self.ioeventfds.items():
            try:
                self._ioevent_counts[name] += os.eventfd_read(efd)
            except BlockingIOError:
                pass
        return dict(self._ioevent_counts)

    def add_irqfd(self, gsi: int, after: float | None = None) -> int:
        """An irqfd for ``gsi`` (needs ``irqchip=True``); returns the eventfd.  With
        ``after``, ``run`` signals it that many seconds after it starts (once)."""
        efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._eventfds.append(efd)
        self.vm.irqfd(efd, gsi)
        self.irqfds[gsi] = efd
        if after is not None:
            self._irq_schedule.append((after, efd))
        return efd

    def raise_irq(self, gsi: int) -> None:
        """Signal the irqfd of ``gsi`` (an edge on that interrupt line), from any thread."""
        os.eventfd_write(self.irqfds[gsi], 1)

    def add_breakpoint(self, address, vcpu: int = 0) -> int:
        """A hardware execution breakpoint (KVM_SET_GUEST_DEBUG with USE_HW_BP, DR0-DR3):
        the run stops with a DEBUG exit *before* the instruction at ``address`` (a linear
        address, or a symbol of the loaded program).  At most 4.  Returns the address.
        To go on past it, :meth:`clear_breakpoints` and run again."""
        if isinstance(address, str):
            if self.program is None or address not in self.program.symbols:
                raise ValueError(f"no symbol {address!r} in the loaded program")
            address = self.program.symbols[address]
        bps = self._breakpoints.setdefault(vcpu, [])
        if len(bps) >= 4:
            raise ValueError("x86 has 4 hardware breakpoints (DR0-DR3); clear one first")
        bps.append(int(address))
        self._apply_debug(vcpu)
        return int(address)

    def clear_breakpoints(self, vcpu: int = 0) -> None:
        """Remove every hardware breakpoint (guest debugging off)."""
        self._breakpoints[vcpu] = []
        self._apply_debug(vcpu)

    def _apply_debug(self, vcpu: int) -> None:
        bps = self._breakpoints.get(vcpu, [])
        if not bps:
            self.vcpus[vcpu].set_guest_debug(enable=False)
            return
        dr = [0] * 8
        dr7 = 0
        for i, a in enumerate(bps):
            dr[i] = a
            dr7 |= 1 << (2 * i)             # Li: enable; RWi=00 (execute), LENi=00
        dr[7] = dr7
        self.vcpus[vcpu].set_guest_debug(hw_bp=True, debugreg=dr)

    # ---------------------------------------------------------------- guest memory
    def write_phys(self, gpa: int, data: bytes) -> None:
        """Copy ``data`` into guest-physical memory (RAM or ROM slots) from the host side."""
        data = bytes(data)
        done = 0
        for base, mem, _ in self.regions:
            lo, hi = max(gpa, base), min(gpa + len(data), base + mem.size)
            if lo < hi:
                mem.write(lo - base, data[lo - gpa:hi - gpa])
                done += hi - lo
        if done != len(data):
            raise ValueError(f"{gpa:#x}-{gpa + len(data) - 1:#x} is not all guest memory "
                             f"(RAM is 0-{self.memory.size - 1:#x}): make memory= larger or load lower")

    def read_phys(self, gpa: int, length: int) -> bytes:
        """Read guest-physical memory (RAM or ROM slots) from the host side."""
        for base, mem, _ in self.regions:
            if base <= gpa and gpa + length <= base + mem.size:
                return mem.read(gpa - base, length)
        raise ValueError(f"{gpa:#x}+{length:#x} is not inside one memory slot")

    def load(self, program, stack: int | None = None, vcpu: int = 0) -> None:
        """Put a :class:`kvmlab.asm.Program` at its ``base`` and point the vCPU at its
        ``entry`` (``_start``) with ``rsp = stack`` (default 0x8000) and rflags 0x2."""
        lo, hi = program.base, program.base + len(program.code)
        for s, e, what in self.system_ranges:
            if lo < e and s < hi:
                raise ValueError(f"the image {lo:#x}-{hi - 1:#x} overlaps {what} the Machine built at "
                                 f"{s:#x}-{e - 1:#x}: load it elsewhere (e.g. load=0x1000, and keep it small)")
        if self.mode == "real" and program.entry > 0xFFFF:
            raise ValueError(f"real-mode entry {program.entry:#x} is above 0xFFFF: CS is 0, so load below 64 KiB")
        self.write_phys(program.base, program.code)
        self.program = program
        self.vcpus[vcpu].set_regs(rip=program.entry, rsp=DEFAULT_STACK if stack is None else stack, rflags=0x2)

    # ---------------------------------------------------------------- running
    def run(self, max_exits: int = 100_000, timeout: float | None = 10.0, trace=None, vcpu: int = 0) -> RunResult:
        """Run vCPU ``vcpu`` until the guest stops it (see :mod:`kvmlab.vmm.exitloop`),
        ``max_exits`` KVM_RUN returns, or ``timeout`` seconds (a watchdog kicks the vCPU
        out of KVM_RUN, so a guest spinning without exits cannot hang it).  Ctrl-C raises
        KeyboardInterrupt.  ``trace(exit, action)`` is called for every exit."""
        v = self.vcpus[vcpu]
        ring = v.coalesced_ring
        records: list = []
        counts: Counter = Counter()
        coalesced: list = []
        stop_reason, status = None, None
        pending = False
        timed_out = threading.Event()
        timers = []
        if timeout is not None:
            def fire():
                timed_out.set()
                if v.fd is not None:
                    v.kick()
            timers.append(threading.Timer(timeout, fire))
        for after, efd in self._irq_schedule:
            timers.append(threading.Timer(after, os.eventfd_write, (efd, 1)))
        self._irq_schedule = []
        t0 = time.monotonic()
        try:
            for t in timers:
                t.daemon = True
                t.start()
            n = 0
            while True:
                if n >= max_exits:
                    stop_reason = "max_exits"
                    break
                ex = v.run()
                n += 1
                entries, ring_stop = drain_ring(ring, self.buses)
                coalesced += entries
                action = handle_exit(ex, self.buses, stop_on_hlt=self.stop_on_hlt)
                records.append(action.record)
                counts[action.record["reason"]] += 1
                if action.complete is not None:
                    ex.complete(action.complete)
                pending = ex.reason in (ExitReason.IO, ExitReason.MMIO)
                if trace is not None:
                    trace(ex, action)
                if ring_stop is not None:
                    stop_reason, status = ring_stop.reason, ring_stop.status
                    break
                if action.stop:
                    stop_reason, status = action.reason, action.status
                    break
                if ex.reason == ExitReason.INTR:
                    if timed_out.is_set():
                        stop_reason = "timeout"
                        break
                    v.immediate_exit = 0
                if timeout is not None and time.monotonic() - t0 > timeout:
                    stop_reason = "timeout"
                    break
        finally:
            for t in timers:
                t.cancel()
            v.immediate_exit = 0
        if pending:
            self._complete_pending(v)
        elapsed = time.monotonic() - t0
        return RunResult(
            backend=self.backend, stop_reason=stop_reason, status=status, console=self.console.text,
            exits=records, exit_counts=dict(counts), regs=regs_dict(v.get_regs()),
            sregs=sregs_dict(v.get_sregs()), memory_sha256=self.memory_sha256(),
            coalesced=coalesced, ioeventfds=self.ioeventfd_counts(), elapsed=elapsed)

    def start(self, **run_kwargs):
        """:meth:`run` in a background thread: returns a :class:`~kvmlab.vmm.background.RunHandle`
        at once (``.wait()``, ``.stop()``, ``.running``, live ``.exits``), so a notebook's
        live views keep moving while the guest runs.  Takes the same arguments as ``run``."""
        from .background import RunHandle
        return RunHandle(self, **run_kwargs).start()

    @staticmethod
    def _complete_pending(v) -> None:
        """Finish an IO/MMIO instruction the run stopped on without running more guest
        code: KVM completes it on the next KVM_RUN, and immediate_exit makes that KVM_RUN
        return EINTR right after (reference §8.4).  So the final registers do not depend
        on whether the backend advanced rip before or after the exit."""
        v.immediate_exit = 1
        try:
            v.run()
        finally:
            v.immediate_exit = 0

    def memory_sha256(self) -> str:
        """SHA-256 of guest RAM (slot 0), hex."""
        return hashlib.sha256(self.memory.array).hexdigest()

    # ---------------------------------------------------------------- guest files
    @classmethod
    def from_file(cls, path, *, backend: str | None = None, mode: str | None = None, echo=None,
                  **machine_kw) -> "Machine":
        """Assemble a guest file and build the Machine its ``# kvmlab:`` header asks for
        (see :mod:`kvmlab.vmm.guest`), with the guest loaded.  ``mode`` overrides the header;
        other keywords (``stop_on_hlt``, ``vcpus``, ...) go to :class:`Machine`."""
        with open(path, encoding="utf-8") as f:
            source = f.read()
        name = os.path.basename(str(path))
        hdr = parse_header(source, name)
        program = asm.assemble_file(path, mode=mode)
        m = cls(mode=mode or hdr.mode or program.mode, memory=hdr.memory or DEFAULT_MEMORY,
                backend=backend, irqchip=hdr.irqchip or machine_kw.pop("irqchip", False),
                gib=hdr.gib or machine_kw.pop("gib", 4), echo=echo, **machine_kw)
        try:
            for gpa, size in hdr.rom:
                m.add_rom(gpa, size)        # load() copies the image bytes that fall inside
            for addr, size in hdr.coalesced:
                m.coalesce(addr, size)
            for port, size in hdr.coalesced_pio:
                m.coalesce(port, size, pio=True)
            for addr, n, dm in hdr.ioeventfd:
                m.add_ioeventfd(addr, n, datamatch=dm)
            for port, n, dm in hdr.ioeventfd_pio:
                m.add_ioeventfd(port, n, pio=True, datamatch=dm)
            for gsi, after in hdr.irqfd:
                m.add_irqfd(gsi, after=after)
            m.load(program, stack=hdr.stack)
            for bp in hdr.breakpoint:
                m.add_breakpoint(bp if bp in program.symbols else _symbol_or_number(bp))
        except BaseException:
            m.close()
            raise
        return m

    # ---------------------------------------------------------------- lifetime
    def close(self) -> None:
        """Close the vCPU and VM fds and the eventfds."""
        if self._closed:
            return
        self._closed = True
        for v in self.vcpus:
            v.close()
        if getattr(self, "vm", None) is not None:
            self.vm.close()
        for fd in self._eventfds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._eventfds = []
        for _, mem, _ in getattr(self, "regions", ()):
            mem.close()          # unregister the host range (the numpy views stay readable)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return (f"<Machine mode={self.mode!r} backend={self.backend!r} memory={self.memory.size:#x} "
                f"vcpus={len(self.vcpus)}>")


def _symbol_or_number(text: str) -> int:
    from .guest import GuestError, number
    try:
        return number(text)
    except GuestError:
        raise GuestError(f"breakpoint={text}: not a label of the program nor an address") from None


def _with_apic_id(entries, apic_id: int):
    """Copy of a CPUID table with leaf 1 EBX[31:24] = the vCPU's initial APIC id."""
    out = []
    for e in entries:
        e = uapi.kvm_cpuid_entry2.from_buffer_copy(e)
        if e.function == 1:
            e.ebx = (e.ebx & 0x00FFFFFF) | (apic_id << 24)
        out.append(e)
    return out
