"""Helpers for the fact tests: [PVM] detection, real-mode guests, and guarded runs.

Every guest run goes through :func:`run`, which arms a watchdog thread that calls
``vcpu.kick()`` after ``timeout`` seconds, so a guest that loops without exits (or a
backend that never returns) cannot hang the suite: the run returns an INTR exit and
:func:`run` raises ``GuestTimeout`` unless the caller expected it (``allow_timeout``).
"""
from __future__ import annotations

import os
import threading

import kvmlab
from kvmlab.asm import assemble

MiB = 1 << 20
PAGE = 4096


# ---- which expectation applies ---------------------------------------------------------
def pvm_host() -> bool:
    """True if this host's KVM vendor module is kvm_pvm (reference §0).  kvm_pvm is built
    into the kernel here but still shows up as /sys/module/kvm_pvm (it has parameters);
    /proc/kallsyms is the fallback."""
    if os.path.isdir("/sys/module/kvm_pvm"):
        return True
    try:
        with open("/proc/kallsyms") as f:
            return any(" pvm_emulate_one" in line for line in f)
    except OSError:
        return False


_PVM_HOST = None


def is_pvm(kvm) -> bool:
    """True where [PVM] facts apply: the hw backend on a kvm_pvm host.  The simulator
    follows upstream kvm-intel/kvm-amd."""
    global _PVM_HOST
    if kvm.backend_name != "hw":
        return False
    if _PVM_HOST is None:
        _PVM_HOST = pvm_host()
    return _PVM_HOST


def upstream_or_pvm(kvm, upstream, pvm):
    """The expectation for this backend: ``pvm`` on a PVM host's /dev/kvm, else ``upstream``."""
    return pvm if is_pvm(kvm) else upstream


# ---- guarded runs ------------------------------------------------------------------------
class GuestTimeout(AssertionError):
    pass


def run(vcpu, timeout: float = 2.0, allow_timeout: bool = False):
    """One KVM_RUN with a watchdog that kicks the vCPU after ``timeout`` seconds.

    Returns the exit.  If the watchdog fired, the exit is INTR and, unless
    ``allow_timeout``, GuestTimeout is raised.  ``immediate_exit`` is cleared again if
    the watchdog set it."""
    lock = threading.Lock()
    state = {"done": False, "fired": False}

    def bark():
        with lock:
            if state["done"]:
                return
            state["fired"] = True
            vcpu.kick()

    t = threading.Timer(timeout, bark)
    t.daemon = True
    t.start()
    try:
        ex = vcpu.run()
    finally:
        with lock:
            state["done"] = True
        t.cancel()
    if state["fired"]:
        vcpu.immediate_exit = 0
        if not allow_timeout:
            raise GuestTimeout(f"the guest made no exit within {timeout} s (rip={vcpu.get_regs().rip:#x})")
    return ex


def warm_up(kvm, timeout: float = 600.0) -> None:
    """Run a one-instruction guest once with a generous watchdog, so that one-time costs
    of a backend (the simulator compiles its CPU core on the first KVM_RUN) do not count
    against the short watchdogs of the fact tests."""
    vm = kvm.create_vm()
    try:
        mem = kvmlab.GuestMemory(PAGE * 2)
        vm.set_user_memory_region(0, 0, mem)
        mem.write(0x1000, b"\xe6\x80\xf4")            # out 0x80, al; hlt
        vcpu = vm.create_vcpu(0)
        set_real_mode(vcpu, 0x1000)
        for _ in range(2):
            run(vcpu, timeout=timeout, allow_timeout=True)
        vcpu.close()
    finally:
        vm.close()


STOP = (kvmlab.KVM_EXIT_HLT, kvmlab.KVM_EXIT_SHUTDOWN, kvmlab.KVM_EXIT_INTERNAL_ERROR,
        kvmlab.KVM_EXIT_FAIL_ENTRY, kvmlab.KVM_EXIT_UNKNOWN, kvmlab.KVM_EXIT_DEBUG)


def run_until(vcpu, stop=STOP, max_exits: int = 100, in_value=0, mmio_value=0, timeout: float = 2.0,
              on_exit=None):
    """Run, completing IN and MMIO reads with ``in_value``/``mmio_value``, until an exit
    whose reason is in ``stop`` (returned last).  Returns the list of exits (each decoded
    at the time it happened: IO/MMIO fields are captured as tuples in ``.info``)."""
    out = []
    for _ in range(max_exits):
        ex = run(vcpu, timeout)
        ex_info = describe(ex)
        out.append(ex_info)
        if on_exit is not None:
            on_exit(ex)
        if ex.reason in stop:
            return out
        if ex.reason == kvmlab.KVM_EXIT_IO and ex.is_in:
            ex.complete(in_value(ex) if callable(in_value) else in_value)
        elif ex.reason == kvmlab.KVM_EXIT_MMIO and not ex.is_write:
            ex.complete(mmio_value(ex) if callable(mmio_value) else mmio_value)
    raise AssertionError(f"no stop exit within {max_exits} exits: last {out[-3:]}")


def describe(ex):
    """A plain, comparable snapshot of an exit (exit objects read the live kvm_run page)."""
    r = ex.reason
    if r == kvmlab.KVM_EXIT_IO:
        return ("IO", "out" if ex.is_out else "in", ex.port, ex.size, ex.count,
                ex.data if ex.is_out else None)
    if r == kvmlab.KVM_EXIT_MMIO:
        return ("MMIO", "write" if ex.is_write else "read", ex.phys_addr, ex.len,
                ex.data if ex.is_write else None)
    return (getattr(r, "name", str(r)).replace("KVM_EXIT_", ""),)


# ---- real-mode guests ----------------------------------------------------------------------
class Guest:
    """A VM with RAM at [0, mem_size), optionally a READONLY page right above it (filled
    with 0xAB), and vCPU 0 in real mode with cs.base 0 at the program's entry."""

    def __init__(self, vm, mem, vcpu, prog, ro=None):
        self.vm, self.mem, self.vcpu, self.prog, self.ro = vm, mem, vcpu, prog, ro

    def sym(self, name):
        return self.prog.symbols[name]

    def run(self, **kw):
        return run(self.vcpu, **kw)

    def run_until(self, *a, **kw):
        return run_until(self.vcpu, *a, **kw)

    @property
    def regs(self):
        return self.vcpu.get_regs()


def real_mode(vm, source: str, *, load: int = 0x1000, mem_size: int = 0x80000, ro_slot: bool = False,
              irqchip: bool = False, ivt_stubs: int = 0, rsp: int = 0x8000, **regs) -> Guest:
    """Build the reference's real-mode layout (§8.3): slot 0 RAM [0, mem_size), slot 1 a
    READONLY page at mem_size if ``ro_slot``, no slot above; code assembled at ``load``.
    ``ivt_stubs=n`` installs IVT handlers for vectors 0..n-1 that do
    ``mov al, v; out 0xEE, al; hlt`` (stub for vector v at 0x500 + 8v)."""
    if irqchip:
        vm.create_irqchip()
    mem = kvmlab.GuestMemory(mem_size)
    vm.set_user_memory_region(0, 0, mem)
    ro = None
    if ro_slot:
        ro = kvmlab.GuestMemory(PAGE)
        ro[:] = 0xAB
        vm.set_user_memory_region(1, mem_size, ro, flags=kvmlab.KVM_MEM_READONLY)
    if not source.lstrip().startswith(".code"):
        source = ".code16\n" + source
    prog = assemble(source, base=load)
    mem.write(load, prog.code)
    for v in range(ivt_stubs):
        stub = bytes([0xB0, v, 0xE6, 0xEE, 0xF4])
        mem.write(0x500 + 8 * v, stub)
        mem.write(4 * v, (0x500 + 8 * v).to_bytes(2, "little") + b"\0\0")
    vcpu = vm.create_vcpu(0)
    set_real_mode(vcpu, prog.entry, rsp=rsp, **regs)
    return Guest(vm, mem, vcpu, prog, ro)


def set_real_mode(vcpu, rip: int, rsp: int = 0x8000, **regs):
    s = vcpu.get_sregs()
    s.cs.base, s.cs.selector = 0, 0
    for seg in (s.ds, s.es, s.fs, s.gs, s.ss):
        seg.base, seg.selector = 0, 0
    vcpu.set_sregs(s)
    vcpu.set_regs(rip=rip, rsp=rsp, rflags=regs.pop("rflags", 2), **regs)


def eventfd_count(fd: int) -> int:
    """Read (and reset) an eventfd counter without blocking; 0 if it is zero."""
    import fcntl
    fl = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, fl | os.O_NONBLOCK)
    try:
        return os.eventfd_read(fd)
    except BlockingIOError:
        return 0
    finally:
        fcntl.fcntl(fd, fcntl.F_SETFL, fl)
