"""arch/x86/kvm/x86.c: ``kvm_arch_vcpu_ioctl_run`` -> ``vcpu_run`` -> ``vcpu_enter_guest``.

One KVM_RUN:

1. validate ``kvm_valid_regs``/``kvm_dirty_regs`` and load dirty sync regs;
2. finish the instruction the VMM was asked to complete (IN / MMIO read data), even with
   ``immediate_exit`` set; then honour ``immediate_exit`` (EINTR, the guest does not run);
3. loop: accept INIT/SIPI, inject pending events, run the VM-entry checks of the vendor
   flavour, enter the core for a bounded number of instructions, and handle the exit:
   in the kernel if possible (ioeventfd, coalesced MMIO/PIO, in-kernel PIC/IOAPIC/LAPIC,
   HLT with an in-kernel LAPIC, the kernel's own interrupt windows), else fill kvm_run
   and return to userspace.  Between budget chunks KVM looks at signals: Ctrl-C and
   ``kick`` end KVM_RUN with EINTR / KVM_EXIT_INTR.

These functions are methods of :class:`kvmlab.sim.x86.KvmVcpuArch`.
"""
from __future__ import annotations

import errno
import struct
import time

from .. import uapi as U
from ..cpu import layout as L
from ..cpu.run import run as core_run
from . import signals
from . import stats as S
from .iobus import KVM_MMIO_BUS, KVM_PIO_BUS, kvm_io_bus_read, kvm_io_bus_write
from .kvm_run import (DEV_APIC, DEV_MMIO, DEV_PIO, FAST_REP, FAST_USER, NOT_ENTERED, complete_ctx,
                      complete_with, enter_ctx, entry_point, fast_exit, fill_exit)

EXIT_IO, EXIT_MMIO, EXIT_HLT, EXIT_BUDGET = L.EXIT_IO, L.EXIT_MMIO, L.EXIT_HLT, L.EXIT_BUDGET
EXIT_IRQ_WINDOW, EXIT_DEBUG = L.EXIT_IRQ_WINDOW, L.EXIT_DEBUG
EXIT_LOCKED = L.EXIT_LOCKED
REQ_IRQ_WIN = L.REQ_IRQ_WIN
PM_SMP = L.PM_SMP
FAST_USER_REP = FAST_USER + FAST_REP
KVM_MP_STATE_UNINITIALIZED = U.KVM_MP_STATE_UNINITIALIZED
EXITS, IO_EXITS, MMIO_EXITS, HALT_EXITS = S.EXITS, S.IO_EXITS, S.MMIO_EXITS, S.HALT_EXITS
_EINTR = errno.EINTR


def _eintr(msg="KVM_RUN was interrupted (immediate_exit, a kick or a signal)"):
    return OSError(_EINTR, msg)


def kvm_arch_vcpu_ioctl_run(self):
    """KVM_RUN (vcpu->mutex held for the whole call, as in kvm_vcpu_ioctl)."""
    with self.vcpu.mutex:
        if self.parked is not None:
            return _deliver_parked(self)
        self.waiting_user = False
        return _run(self)


def _enter(ctx, budget, devmask, plain):
    """``enter_ctx`` without the dispatcher's type matching (resolved at the first call)."""
    global _enter
    from numba import int64
    _enter = entry_point(enter_ctx, int64, int64, int64, int64)
    return _enter(ctx, budget, devmask, plain)


def make_kvm_run(self):
    """KVM_RUN for one vCPU, as the vCPU fd's hot path calls it (``SimBackend.ioctl``).

    The same as :func:`kvm_arch_vcpu_ioctl_run`, with a shortcut for the state almost
    every exit round trip of a VMM loop is in: no sync regs, nothing to complete, no
    ``immediate_exit`` or interrupt-window request, no in-kernel irqchip, no state for the
    VM-entry checks, no tracing, one vCPU (or the SMP mode already on).  Then the guest is
    entered at once with one compiled call (``enter_ctx``, plain); whatever the exit, the result
    is what :func:`_run` would have produced (anything but a filled kvm_run goes on in
    :func:`_loop`).  Any other state takes :func:`_run`.  The closure holds the objects that
    live as long as the vCPU; everything userspace or the kernel can change is read at
    every call."""
    mutex = self.vcpu.mutex
    acquire, release = mutex.acquire, mutex.release     # cheaper than "with mutex"
    pmv = self.pmv
    kvm = self.kvm
    karch = kvm.arch
    tr = kvm.trace
    ctx = self.ctx_addr
    sig = signals

    def kvm_run():
        acquire()
        try:
            if self.parked is not None:
                return _deliver_parked(self)
            self.waiting_user = False
            if (self.pending or self.apic is not None or self.check_entry or
                    self.rep_tail is not None or tr.on or karch.no_backed_memory or
                    karch.deterministic or not (kvm.online_vcpus == 1 or pmv[PM_SMP]) or
                    not FAST_PATH):
                return _run(self)
            self.has_run = True
            self.kicked = False
            budget = self.BUDGET
            try:
                # enter_ctx itself looks at the kvm_run fields that need the general path
                code, r = _enter(ctx, budget, karch.devmask, 1)
                if r >= FAST_USER:                  # kvm_run is filled: back to userspace
                    if r >= FAST_USER_REP:
                        r -= FAST_REP
                        _rep_io_fixup(self)         # a REP INS/OUTS element
                    self.pending = r - FAST_USER
                    self.last_code = code
                    return 0
            except KeyboardInterrupt:
                sig.pending()
                _intr_fill(self)
                raise
            if code == NOT_ENTERED:
                return _run(self)
            # the signal state is first looked at after an entry (_signal_pending)
            self.sig = sig._installed or sig.install()
            self.sig_armed = False
            return _loop(self, 0, budget, (code, r))
        finally:
            release()
    kvm_run.__qualname__ = kvm_run.__name__ = "kvm_arch_vcpu_ioctl_run"
    return kvm_run


#: False: every KVM_RUN takes the general path (the tests compare both)
FAST_PATH = True


def _run(self):
    """The general KVM_RUN (the plain state takes the shortcut in :func:`make_kvm_run`)."""
    mv = self.mv
    st = self.st
    # -- sync regs in ---------------------------------------------------------------------
    mv64 = self.mv64
    valid = mv64[36]
    if valid or mv64[37]:
        dirty = mv64[37]
        if (valid | dirty) & ~U.KVM_SYNC_X86_VALID_FIELDS:
            raise OSError(errno.EINVAL, "kvm_run.kvm_valid_regs/kvm_dirty_regs has unknown "
                                        "bits; valid are REGS=1, SREGS=2, EVENTS=4")
        if dirty:
            _sync_regs_in(self, dirty)
            mv64[37] = 0
    self.has_run = True
    self.kicked = False
    # -- complete what the VMM answered ----------------------------------------------------
    if self.pending:
        v = self.vcpu
        rep_in = complete_ctx(self.ctx_addr, self.pending)   # 1: a REP INS
        self.pending = 0
        if mv[1] or rep_in:
            code = core_run(st, self.pm_arr, 1)
            while code == EXIT_LOCKED:
                code = _locked_step(self)
            if rep_in and (code == EXIT_BUDGET or code == EXIT_DEBUG and
                           int(st[L.DBG_DR6]) & 0x4000):
                past = int(st[L.RIP])
                if _rep_io_fixup(self) and code == EXIT_DEBUG:
                    # KVM reports the single-step after the emulator's pass, with rip still
                    # on the unfinished instruction
                    st[L.DBG_PC] = int(st[L.DBG_PC]) - (past - int(st[L.RIP]))
            if code != EXIT_BUDGET:
                v.stat[EXITS] += 1
                if _handle_exit(self, code) is not None:
                    return _out(self, valid)
    if mv[1]:
        raise _eintr("KVM_RUN returned at once because kvm_run.immediate_exit is set "
                     "(clear it to run the guest)")
    kvm = self.kvm
    arch = kvm.arch
    if arch.no_backed_memory:
        bad = next(iter(kvm.memslots.id_hash.values()))
        raise OSError(errno.EFAULT, f"memslot {bad.id}'s userspace_addr "
                      f"{bad.userspace_addr:#x} is not memory kvmlab knows; back slots with "
                      "kvmlab.GuestMemory (or register the buffer in kvmlab.hostmem)")
    self.sig = signals._installed or signals.install()
    self.sig_armed = False
    apic = self.apic
    if apic is not None and self.mp_state == KVM_MP_STATE_UNINITIALIZED:
        return _wait_for_sipi(self, valid)
    if self.check_entry:
        why = self.ops.check_entry(entry_state(self))
        if why is not None:
            return _fail_entry(self, why, valid)
        self.check_entry = False
    if apic is None:
        # userspace asks for an interrupt window (only without an in-kernel LAPIC)
        stv = self.stv
        if mv[0] or stv[REQ_IRQ_WIN]:
            stv[REQ_IRQ_WIN] = mv[0]
        budget = self.BUDGET
    else:
        budget = self.BUDGET_IRQCHIP
    if arch.deterministic:
        return _run_round_robin(self, valid)
    if kvm.online_vcpus > 1 and not self.pmv[PM_SMP]:
        self.pmv[PM_SMP] = 1             # vCPU threads may now run concurrently: locked insns exit
    return _loop(self, valid, budget, None)


def _loop(self, valid, budget, first):
    """``vcpu_run``'s loop: enter, handle the exit in the kernel or return to userspace.
    ``first``: the (code, answer) of an entry the caller already made (the fast path of
    :func:`make_kvm_run`), handled before the next entry."""
    st = self.st
    kvm = self.kvm
    arch = kvm.arch
    apic = self.apic
    nlocked = 0
    tr = kvm.trace
    ctx = self.ctx_addr
    try:
        while True:
            if first is not None:
                code, r = first
                first = None
            else:
                if apic is not None:
                    _irqchip_entry(self)
                    while self.mp_state == U.KVM_MP_STATE_INIT_RECEIVED:
                        _block_until_sipi(self)
                        _irqchip_entry(self)
                if self.rep_tail is not None:
                    code = _finish_rep_tail(self)
                    if code == EXIT_BUDGET:
                        continue
                    r = fast_exit(st, self.page, self.lay, code, arch.devmask)
                elif tr.on:
                    code = _traced_run(self, budget)
                    r = fast_exit(st, self.page, self.lay, code, arch.devmask)
                else:
                    code, r = _enter(ctx, budget, arch.devmask, 0)
                    if r >= FAST_USER:              # kvm_run is filled: back to userspace
                        if r >= FAST_USER_REP:
                            r -= FAST_REP
                            _rep_io_fixup(self)     # a REP INS/OUTS element
                        self.pending = r - FAST_USER
                        self.last_code = code
                        return _out(self, valid) if valid else 0
            if code == EXIT_LOCKED:
                self.vcpu.stat[EXITS] -= 1          # fast_exit counted it: no exit on real hardware
                while code == EXIT_LOCKED:
                    code = _locked_step(self)
                if code == EXIT_BUDGET:
                    # the locked instruction retired; look at signals now and then, as a
                    # loop of locked instructions never uses up a budget
                    nlocked += 1
                    if nlocked & 255 == 0:
                        if self.kicked or _signal_pending(self):
                            return _intr(self, valid)
                        if kvm.irqfds.items:
                            kvm.irqfds.drain()
                    continue
                r = fast_exit(st, self.page, self.lay, code, arch.devmask)
            if r >= FAST_USER:
                self.pending = r - FAST_USER
                self.last_code = code
                if code == EXIT_IO:
                    _rep_io_fixup(self)
                return _out(self, valid) if valid else 0
            if code == EXIT_BUDGET:
                self.vcpu.stat[S.IRQ_EXITS] += 1
                if self.kicked or _signal_pending(self):
                    return _intr(self, valid)
                if kvm.irqfds.items:
                    kvm.irqfds.drain()
                continue
            if _handle_exit(self, code) is not None:
                return _out(self, valid)
    except KeyboardInterrupt:
        signals.pending()               # the SIGINT's wakeup byte: consumed with it
        _intr_fill(self)
        _out(self, valid)
        raise


def _out(self, valid):
    """End of KVM_RUN: store sync regs if asked."""
    if valid:
        _sync_regs_out(self, valid)
    return 0


def _trace_exit(self, code):
    st = self.st
    self.kvm.trace.emit(self.vcpu, "kvm_exit", reason=self.ops.code_name(self.last_hw_exit),
                        hw_exit_code=self.last_hw_exit, rip=int(st[L.RIP]))
    if code == EXIT_IO:
        self.kvm.trace.emit(self.vcpu, "kvm_pio", rw="write" if st[L.IO_DIR] else "read",
                            port=int(st[L.IO_PORT]), size=int(st[L.IO_SIZE]),
                            count=int(st[L.IO_COUNT]))
    elif code == EXIT_MMIO:
        self.kvm.trace.emit(self.vcpu, "kvm_mmio", rw="write" if st[L.MMIO_WRITE] else "read",
                            len=int(st[L.MMIO_LEN]), gpa=int(st[L.MMIO_GPA]) & (2 ** 64 - 1))


def _traced_run(self, budget, entry=True):
    """One entry with the tracepoints on: kvm_entry, kvm_exit (+ kvm_pio / kvm_mmio), and
    a kvm_coalesced_mmio event per ring entry the core appended.  entry=False: the
    continuation of an entry (a locked instruction), no kvm_entry event."""
    st = self.st
    tr = self.kvm.trace
    ring = self.kvm.coalesced_mmio_ring
    last0 = int(ring[4:8].view("<u4")[0])
    if entry:
        tr.emit(self.vcpu, "kvm_entry", rip=int(st[L.RIP]))
    code = core_run(st, self.pm_arr, budget)
    last1 = int(ring[4:8].view("<u4")[0])
    i = last0
    while i != last1 and i < 170:
        off = 8 + 24 * i
        addr, n, pio = struct.unpack_from("<QII", ring, off)
        tr.emit(self.vcpu, "kvm_coalesced_mmio", addr=addr, len=n, pio=pio,
                data=bytes(ring[off + 16:off + 16 + n]).hex())
        i = (i + 1) % 170
    if code != EXIT_BUDGET and code != EXIT_LOCKED:
        self.last_code = code
        _trace_exit(self, code)
    return code


def _locked_step(self):
    """The core stopped before a LOCKed read-modify-write / XCHG with memory (EXIT_LOCKED:
    the VM's vCPUs may run concurrently).  Run that one instruction holding the VM's
    ``locked_insn`` lock, so no other vCPU's locked instruction interleaves with it.
    Returns the core's exit code (EXIT_BUDGET: it retired; any other exit -- #PF delivered
    and an exit, MMIO, debug -- is handled by the caller after the lock is released)."""
    st = self.st
    with self.kvm.locked_insn:
        st[L.LOCK_OK] = 1
        try:
            if self.kvm.trace.on:
                code = _traced_run(self, 1, entry=False)
            else:
                code = core_run(st, self.pm_arr, 1)
        finally:
            st[L.LOCK_OK] = 0
    return code


def _signal_pending(self):
    """``signal_pending(current)`` between budget chunks / while halted.  The first look of
    each KVM_RUN only empties the wakeup pipe: bytes already there belong to signals whose
    Python handlers ran before this KVM_RUN (e.g. a Ctrl-C at the prompt), which real KVM
    would not see as pending either."""
    if not self.sig:
        return False
    if not self.sig_armed:
        signals.pending()
        self.sig_armed = True
        return False
    return signals.pending()


def _intr_fill(self):
    struct.pack_into("<I", self.page, 8, U.KVM_EXIT_INTR)
    self.vcpu.stat[S.SIGNAL_EXITS] += 1
    self.last_code = EXIT_BUDGET


def _intr(self, valid):
    _intr_fill(self)
    _out(self, valid)
    raise _eintr("KVM_RUN was interrupted by a kick/signal (KVM_EXIT_INTR)")


def _fail_entry(self, why, valid):
    page = self.page
    page[32:32 + 256] = 0
    struct.pack_into("<IQI", page, 8, U.KVM_EXIT_FAIL_ENTRY, 0, 0)
    struct.pack_into("<QI", page, 32, self.ops.entry_failure_reason, 0)
    # kvmlab extension: the broken rule, NUL-terminated, after fail_entry.cpu
    msg = why.encode()[:200]
    page[48:48 + len(msg)] = list(msg)
    self.failed_entry_rule = why
    self.last_code = None
    self.vcpu.stat[EXITS] += 1
    tr = self.kvm.trace
    if tr.on:
        tr.emit(self.vcpu, "kvm_fail_entry", hw_exit_code=self.ops.entry_failure_reason,
                rule=why)
    return _out(self, valid)


def _handle_exit(self, code):
    """Exits other than IO/MMIO/BUDGET.  Returns None to re-enter the guest, else 0
    (kvm_run filled: return to userspace)."""
    st = self.st
    page = self.page
    v = self.vcpu
    stat = v.stat
    apic = self.apic
    tr = self.kvm.trace
    if code == EXIT_IO or code == EXIT_MMIO:
        # from a 1-instruction completion run
        if code == EXIT_IO:
            _rep_io_fixup(self)
            if self.kvm.arch.devmask & DEV_PIO and _pio_in_kernel(self):
                return _singlestep_after_kernel_write(self, st[L.IO_DIR])
        else:
            if self.kvm.arch.devmask & (DEV_MMIO | DEV_APIC) and _mmio_in_kernel(self):
                return _singlestep_after_kernel_write(self, st[L.MMIO_WRITE] and not st[L.MQ_N])
            stat[MMIO_EXITS] += 1
        self.pending = fill_exit(st, page, self.lay, code, apic is not None)
        self.last_code = code
        return 0
    self.last_code = code
    if code == EXIT_HLT:
        stat[HALT_EXITS] += 1
        if apic is not None:
            r = _halt_in_kernel(self)
            return r
        fill_exit(st, page, self.lay, U.KVM_EXIT_HLT, False)
        return 0
    if code == EXIT_IRQ_WINDOW:
        stat[S.IRQ_WINDOW_EXITS] += 1
        if apic is not None:
            st[L.REQ_IRQ_WIN] = 0
            return None                       # KVM's own window: inject on re-entry
        st[L.REQ_IRQ_WIN] = 0
        stat[S.REQUEST_IRQ_EXITS] += 1
        fill_exit(st, page, self.lay, U.KVM_EXIT_IRQ_WINDOW_OPEN, False)
        return 0
    if code == EXIT_DEBUG:
        fill_exit(st, page, self.lay, U.KVM_EXIT_DEBUG, apic is not None)
        # debug.arch.dr7 is the DR7 in effect (the debugger's with USE_HW_BP); bit 10 of
        # DR7 always reads as 1
        dr7 = struct.unpack_from("<Q", page, 56)[0]
        struct.pack_into("<Q", page, 56, dr7 | 0x400)
        if int(st[L.DBG_EXC]) == 1 and int(st[L.DBG_DR6]) & 0xF:
            # an instruction breakpoint is a fault: KVM does not set RFLAGS.RF when it
            # reports it, so re-entering with the breakpoint still armed reports it again
            # (the debugger disarms it or single-steps over it), as on VMX/SVM hardware
            st[L.DBG_SKIP_HWBP] = 0
        return 0
    if code == L.EXIT_SHUTDOWN:
        if self.ops.reset_on_shutdown:
            # svm.c shutdown_interception: the VMCB is undefined after a shutdown
            # intercept, so KVM INIT-resets the vCPU before telling userspace
            self.kvm_vcpu_reset(True)
        else:
            # kvm_check_and_inject_events sets RFLAGS.RF whenever it injects a fault-class
            # exception; the exception that escalated to the triple fault was one, so the
            # state kept at the SHUTDOWN exit has RF=1 (as the hw backend shows)
            st[L.RFLAGS] |= L.F_RF
        fill_exit(st, page, self.lay, U.KVM_EXIT_SHUTDOWN, apic is not None)
        return 0
    if code == L.EXIT_INTERNAL_ERROR:
        if _hypercall(self):
            return None
        _internal_error(self)
        return 0
    raise OSError(errno.EIO, f"the CPU core returned an unknown exit code {code}; this is a "
                             "kvmlab bug, please report it")


def _rep_string_io(st):
    """The instruction that exited is a REP INS/OUTS (the core's decode of it)."""
    d = L.D
    return bool(st[d + L.D_REP]) and st[d + L.D_MAP] == 0 and 0x6C <= st[d + L.D_OPC] <= 0x6F


def _rep_io_fixup(self):
    """x86_emulate_insn for a REP INS/OUTS that goes to userspace element by element:
    KVM's emulator sets RFLAGS.RF while the string instruction is unfinished, and
    ``string_insn_completed`` is false for INS/OUTS even when rcx has reached 0, so after
    the last element rip stays on the instruction (RF=1); the next entry runs it once more
    with rcx=0, which ends it (rip moves on, RF is cleared: :func:`_finish_rep_tail`).
    The core advances rip with the last element; the kernel puts it back here."""
    st = self.st
    if not _rep_string_io(st):
        return False
    st[L.RFLAGS] |= L.F_RF
    asz = int(st[L.D + L.D_ASZ])
    rcx = int(st[L.RCX]) & ((1 << (8 * asz)) - 1 if asz < 8 else -1)
    if rcx == 0 and st[L.RIP] != st[L.INSN_RIP]:
        st[L.RIP] = st[L.INSN_RIP]
        self.rep_tail = int(st[L.RIP])
        return True
    return False


def _finish_rep_tail(self):
    """Run the REP INS/OUTS left at rcx=0 (one instruction) and clear RF once it is done.
    Returns the core's exit code."""
    st = self.st
    at, self.rep_tail = self.rep_tail, None
    if int(st[L.RIP]) != at:
        return EXIT_BUDGET                  # userspace moved rip (SET_REGS): nothing to finish
    code = core_run(st, self.pm_arr, 1)
    if int(st[L.RIP]) != at:
        st[L.RFLAGS] &= ~L.F_RF
    return code


def _singlestep_after_kernel_write(self, done):
    """A write the kernel consumed (ioeventfd, coalesced zone, in-kernel device) finished
    its instruction: upstream's ``kvm_skip_emulated_instruction`` -> ``kvm_vcpu_do_singlestep``
    reports KVM_EXIT_DEBUG right away under KVM_GUESTDBG_SINGLESTEP (the core only reports
    single-step traps for instructions that did not exit).  Returns None to re-enter the
    guest, 0 when kvm_run holds the DEBUG exit.  ``done``: a write whose instruction has
    retired (not an IN / MMIO read the core finishes on re-entry, nor an MMIO write with
    more fragments queued)."""
    st = self.st
    if not done or (int(st[L.GDBG_CTRL]) & 3) != 3:
        return None
    lin = int(st[L.RIP]) if st[L.MODE64] else \
        (int(st[L.SEG + 4 * L.CS + L.BASE]) + int(st[L.RIP])) & 0xFFFFFFFF
    st[L.EXIT_REASON] = EXIT_DEBUG
    st[L.DBG_EXC] = 1
    st[L.DBG_PC] = lin
    st[L.DBG_DR6] = 0xFFFF4FF0                  # DR6_BS | DR6_ACTIVE_LOW
    st[L.DBG_DR7] = 0
    return _handle_exit(self, EXIT_DEBUG)      # the same VM exit: counted once


KVM_ENOSYS, KVM_EPERM = 1000, 1
VMCALL, VMMCALL = b"\x0f\x01\xc1", b"\x0f\x01\xd9"


def _hypercall(self):
    """VMCALL / VMMCALL: the hypercall intercept (``kvm_emulate_hypercall``).  KVM accepts
    either opcode on either vendor (it patches the other one).  No hypercall is implemented
    by the sim, so every call returns -KVM_ENOSYS in rax (-KVM_EPERM from CPL > 0)."""
    st = self.st
    if int(st[L.INT_SUBERR]) != U.KVM_INTERNAL_ERROR_EMULATION:
        return False
    n = int(st[L.INT_LEN])
    insn = bytes(int(x) & 0xFF for x in st[L.INT_BYTES:L.INT_BYTES + n])
    if insn[:3] not in (VMCALL, VMMCALL):
        return False
    regs = self.core.get_regs()
    nr = regs.rax
    ret = -KVM_EPERM if st[L.CPL] > 0 else -KVM_ENOSYS
    regs.rax = ret & 0xFFFFFFFFFFFFFFFF
    regs.rip = (regs.rip + 3) & 0xFFFFFFFFFFFFFFFF
    self.core.set_regs(regs)
    self.vcpu.stat[S.HYPERCALLS] += 1
    self.last_code = -1
    tr = self.kvm.trace
    if tr.on:
        tr.emit(self.vcpu, "kvm_hypercall", nr=nr, ret=ret)
    return True


def _internal_error(self):
    st = self.st
    page = self.page
    fill_exit(st, page, self.lay, U.KVM_EXIT_INTERNAL_ERROR, self.apic is not None)
    page[32:32 + 256] = 0
    sub = int(st[L.INT_SUBERR])
    if sub == U.KVM_INTERNAL_ERROR_EMULATION:
        self.vcpu.stat[S.INSN_EMULATION_FAIL] += 1
        n = int(st[L.INT_LEN])
        insn = bytes(int(x) & 0xFF for x in st[L.INT_BYTES:L.INT_BYTES + n])
        # prepare_emulation_failure_exit: data[0] = flags; then, only if the emulator
        # fetched instruction bytes (insn_size > 0: a real emulation failure on an
        # instruction it cannot run), insn_size + 15 bytes (padded with 0x90) in data[1..2]
        # and flags = INSTRUCTION_BYTES; then the vendor's 5 exit-info words (reason, info1,
        # info2, intr_info, error_code).  A fetch from unmapped memory fetched nothing:
        # flags 0, ndata 6 (reference: "fetch from unmapped GPA").  Upstream does this
        # whether or not KVM_CAP_EXIT_ON_EMULATION_FAILURE is enabled (that cap only decides
        # whether a failure at CPL > 0 exits instead of injecting #UD).
        hw = self.ops.exit_code["emulation"]
        if n:
            struct.pack_into("<IIQB", page, 32, sub, 8, 1, n)
            page[49:49 + 15] = 0x90
            page[49:49 + n] = list(insn)
            struct.pack_into("<5Q", page, 40 + 3 * 8, hw, 0, 0, 0, 0)
        else:
            struct.pack_into("<IIQ", page, 32, sub, 6, 0)
            struct.pack_into("<5Q", page, 40 + 8, hw, 0, 0, 0, 0)
    else:
        struct.pack_into("<II", page, 32, sub, 0)


# -- in-kernel devices ------------------------------------------------------------------------
def _pio_in_kernel(self):
    """``kernel_pio``: offer the access to the PIO bus (ioeventfd, PIC, coalesced PIO)."""
    st = self.st
    port, size, count = int(st[L.IO_PORT]), int(st[L.IO_SIZE]), int(st[L.IO_COUNT])
    bus = self.kvm.buses[KVM_PIO_BUS]
    if st[L.IO_DIR]:
        if count != 1:
            return False
        data = bytes(int(x) & 0xFF for x in st[L.EXIT_DATA:L.EXIT_DATA + size])
        return kvm_io_bus_write(self.vcpu, bus, port, size, data)
    out = bytearray()
    for _ in range(count):
        d = kvm_io_bus_read(self.vcpu, bus, port, size)
        if d is None:
            return False
        out += d
    complete_with(st, 1, bytes(out))
    return True


def _mmio_in_kernel(self):
    """``vcpu_mmio_write``/``vcpu_mmio_read``: the LAPIC first, then the MMIO bus."""
    st = self.st
    gpa, n = int(st[L.MMIO_GPA]) & (2 ** 64 - 1), int(st[L.MMIO_LEN])
    for s in self.kvm.arch.unbacked:
        if s.guest_phys_addr <= gpa < s.guest_phys_addr + s.memory_size:
            # hva_to_pfn failed: KVM_RUN fails with EFAULT (no KVM_EXIT_MEMORY_FAULT here)
            raise OSError(errno.EFAULT, f"the guest touched gpa {gpa:#x} in memslot {s.id}, "
                          f"whose userspace_addr {s.userspace_addr:#x} is not memory kvmlab "
                          "knows; back the slot with kvmlab.GuestMemory")
    apic = self.apic
    bus = self.kvm.buses[KVM_MMIO_BUS]
    if st[L.MMIO_WRITE]:
        data = bytes(int(x) & 0xFF for x in st[L.EXIT_DATA:L.EXIT_DATA + n])
        if apic is not None and apic.write(self.vcpu, gpa, n, data):
            return True
        return kvm_io_bus_write(self.vcpu, bus, gpa, n, data)
    d = apic.read(self.vcpu, gpa, n) if apic is not None else None
    if d is None:
        d = kvm_io_bus_read(self.vcpu, bus, gpa, n)
    if d is None:
        return False
    complete_with(st, 2, d)
    return True


# -- interrupts with an in-kernel irqchip ----------------------------------------------------------
def _pending_vector(self):
    """``kvm_cpu_has_interrupt``: ('pic', None) for an ExtINT from the PIC, ('apic', vec)."""
    apic = self.apic
    pic = self.kvm.arch.vpic
    if pic is not None and pic.output and apic.accept_pic_intr():
        return "pic", None
    vec = apic.has_interrupt()
    if vec >= 0:
        return "apic", vec
    return None, None


def _accept_events(self):
    """``kvm_apic_accept_events``: INIT resets the vCPU (APs wait for SIPI), SIPI starts it
    at vector << 12."""
    apic = self.apic
    if apic is None or not apic.pending_events:
        return
    ev = apic.pending_events
    apic.pending_events = 0
    if ev & 1:                                           # INIT
        self.kvm_vcpu_reset(True)
        apic.reset(init_event=True)
        if self.vcpu.vcpu_id == self.kvm.arch.bsp_vcpu_id:
            self.mp_state = U.KVM_MP_STATE_RUNNABLE
        else:
            self.mp_state = U.KVM_MP_STATE_INIT_RECEIVED
    if ev & 2 and self.mp_state == U.KVM_MP_STATE_INIT_RECEIVED:   # SIPI
        vec = apic.sipi_vector
        sregs = self.core.get_sregs()
        sregs.cs.selector = vec << 8
        sregs.cs.base = vec << 12
        self.core.set_sregs(sregs)
        regs = self.core.get_regs()
        regs.rip = 0
        self.core.set_regs(regs)
        self.mp_state = U.KVM_MP_STATE_RUNNABLE
        tr = self.kvm.trace
        if tr.on:
            tr.emit(self.vcpu, "kvm_sipi", vector=vec)


def _irqchip_entry(self):
    """Per entry with an in-kernel irqchip: timers, INIT/SIPI, NMI and interrupt injection
    (``inject_pending_event``); returns 0 if KVM_RUN must return (INTR)."""
    st = self.st
    apic = self.apic
    kvm = self.kvm
    if self.kicked:
        _intr_fill(self)
        raise _eintr("KVM_RUN was interrupted by a kick/signal (KVM_EXIT_INTR)")
    if kvm.irqfds.items:
        kvm.irqfds.drain()
    with kvm.irq_lock:
        if apic.timer_deadline:
            apic.check_timer(time.monotonic_ns())
        pit = kvm.arch.vpit
        if pit is not None and pit.timer_deadline:
            pit.check_timer(time.monotonic_ns())
        if apic.pending_events:
            _accept_events(self)
        if self.mp_state == U.KVM_MP_STATE_INIT_RECEIVED:
            return None                  # not running: the caller blocks until the SIPI
        if self.nmi_pending and not st[L.NMI_BLOCKED]:
            self.nmi_pending = False
            self.core.queue_nmi()
            self.vcpu.stat[S.NMI_INJECTIONS] += 1
        if st[L.PEND_IRQ] >= 0:
            return None
        src, vec = _pending_vector(self)
        if src is None:
            st[L.REQ_IRQ_WIN] = 0
            return None
        if self.core.interruptible:
            if src == "pic":
                vec = kvm.arch.vpic.read_irq()
            else:
                apic.ack_interrupt(vec)
            self.core.queue_interrupt(vec)
            st[L.HALTED] = 0
            self.vcpu.stat[S.IRQ_INJECTIONS] += 1
            st[L.REQ_IRQ_WIN] = 0
            tr = kvm.trace
            if tr.on:
                tr.emit(self.vcpu, "kvm_inj_virq", vector=vec, source=src)
        else:
            st[L.REQ_IRQ_WIN] = 1                     # enable_irq_window
    return None


def _runnable(self):
    """``kvm_arch_vcpu_runnable`` for a halted vCPU."""
    apic = self.apic
    if apic.pending_events or self.nmi_pending or self.st[L.PEND_NMI]:
        return True
    if not (self.st[L.RFLAGS] & L.F_IF):
        return False
    src, _ = _pending_vector(self)
    return src is not None


def _block(self, until):
    """``kvm_vcpu_block``: sleep until ``until()`` or a kick; wakes for LAPIC timers."""
    v = self.vcpu
    apic = self.apic
    kvm = self.kvm
    v.stat[S.BLOCKING] = 1
    t0 = time.monotonic_ns()
    try:
        while True:
            if self.kicked or _signal_pending(self):
                return False
            if kvm.irqfds.items:
                kvm.irqfds.drain()
            with kvm.irq_lock:
                now = time.monotonic_ns()
                if apic.timer_deadline:
                    apic.check_timer(now)
                pit = kvm.arch.vpit
                if pit is not None and pit.timer_deadline:
                    pit.check_timer(now)
                if until():
                    return True
                timeout = 0.05
                if apic.timer_deadline:
                    timeout = min(timeout, max(0.0, (apic.timer_deadline - now) / 1e9))
                if pit is not None and pit.timer_deadline:
                    timeout = min(timeout, max(0.0, (pit.timer_deadline - now) / 1e9))
            self.wake.wait(timeout)
            self.wake.clear()
    finally:
        v.stat[S.BLOCKING] = 0
        dt = time.monotonic_ns() - t0
        v.stat[S.HALT_WAIT_NS] += dt
        S.log_hist_update(v.stat, S.HALT_WAIT_HIST, dt)
        v.stat[S.HALT_WAKEUP] += 1


def _halt_in_kernel(self):
    """HLT with an in-kernel LAPIC: no exit; the vCPU sleeps (mp_state HALTED) until an
    interrupt it can take arrives (or a signal: EINTR / KVM_EXIT_INTR)."""
    self.mp_state = U.KVM_MP_STATE_HALTED
    if self.kvm.arch.deterministic:
        return None                      # the round-robin scheduler skips it until runnable
    if not self._blocked_until_runnable():
        _intr_fill(self)
        raise _eintr("KVM_RUN was interrupted while the vCPU was halted (KVM_EXIT_INTR)")
    self.mp_state = U.KVM_MP_STATE_RUNNABLE
    self.st[L.HALTED] = 0
    return None


def _block_until_sipi(self):
    """vcpu_run -> vcpu_block for an AP in INIT_RECEIVED: it does not run (upstream's
    ``kvm_vcpu_running`` is false) but sleeps in the kernel until a SIPI (or another INIT)
    arrives, then ``kvm_apic_accept_events`` starts it at the SIPI vector; a signal or a
    kick ends KVM_RUN with EINTR / KVM_EXIT_INTR."""
    ok = _block(self, lambda: bool(self.apic.pending_events))
    if not ok:
        _intr_fill(self)
        raise _eintr("KVM_RUN was interrupted while the AP waited for its SIPI")


def _wait_for_sipi(self, valid):
    """KVM_RUN on an AP in UNINITIALIZED: block until INIT/SIPI, then EAGAIN (upstream)."""
    ok = _block(self, lambda: bool(self.apic.pending_events))
    if not ok:
        _intr_fill(self)
        raise _eintr("KVM_RUN was interrupted while the AP waited for INIT/SIPI")
    with self.kvm.irq_lock:
        _accept_events(self)
    raise OSError(errno.EAGAIN, "the AP received INIT/SIPI while waiting in KVM_RUN; call "
                                "KVM_RUN again to run it")


def hardware_exit(self):
    return self.last_hw_exit


# -- sync regs ----------------------------------------------------------------------------------
def _sync_regs_out(self, valid):
    page = self.page
    if valid & U.KVM_SYNC_X86_REGS:
        page[304:304 + 144] = list(bytes(self.core.get_regs()))
    if valid & U.KVM_SYNC_X86_SREGS:
        page[448:448 + 312] = list(bytes(self.core.get_sregs()))
    if valid & U.KVM_SYNC_X86_EVENTS:
        ev = bytearray(64)
        self.get_vcpu_events(ev)
        page[760:760 + 64] = list(ev)


def _sync_regs_in(self, dirty):
    page = self.page
    if dirty & U.KVM_SYNC_X86_REGS:
        self.core.set_regs(U.kvm_regs.from_buffer_copy(page[304:304 + 144].tobytes()))
        self.check_entry = True
    if dirty & U.KVM_SYNC_X86_SREGS:
        self.set_sregs(bytearray(page[448:448 + 312].tobytes()))
    if dirty & U.KVM_SYNC_X86_EVENTS:
        self.set_vcpu_events(bytearray(page[760:760 + 64].tobytes()))


# -- VM entry checks -------------------------------------------------------------------------
def entry_state(self):
    st = self.st

    def seg(i):
        b = L.SEG + 4 * i
        a = int(st[b + L.ATTR])
        return dict(limit=int(st[b + L.LIMIT]), type=a & 0xF, s=(a >> 4) & 1, dpl=(a >> 5) & 3,
                    present=(a >> 7) & 1, l=(a >> 13) & 1, db=(a >> 14) & 1, g=(a >> 15) & 1,
                    unusable=(a >> 16) & 1)
    return dict(cs=seg(L.CS), ss=seg(L.SS), ds=seg(L.DS), es=seg(L.ES), fs=seg(L.FS),
                gs=seg(L.GS), tr=seg(L.TR), ldt=seg(L.LDTR), cr0=int(st[L.CR0]),
                cr4=int(st[L.CR4]), efer=int(st[L.EFER]), rflags=int(st[L.RFLAGS]),
                dr6=int(st[L.DR6]) & (2 ** 64 - 1), dr7=int(st[L.DR7]) & (2 ** 64 - 1))


# -- deterministic mode: every vCPU of the VM in the calling thread, round-robin ---------------
QUANTUM = 1000          # instructions per vCPU per turn


def _deliver_parked(self):
    """A vCPU that exited to userspace while another vCPU's KVM_RUN was scheduling it: its
    kvm_run page is already filled; its own KVM_RUN returns that exit now."""
    err = self.parked
    self.parked = None
    self.waiting_user = True
    if err:
        raise OSError(err, "KVM_RUN (deterministic mode): this vCPU's run ended with "
                           f"{errno.errorcode.get(err, err)} while another vCPU was running")
    return 0


def _slice(o):
    """One turn of vCPU ``o``: 'user' (an exit for userspace is in its kvm_run page),
    'ran' (it executed), or 'idle' (halted / waiting for SIPI)."""
    apic = o.apic
    kvm = o.kvm
    if apic is not None:
        with kvm.irq_lock:
            if apic.timer_deadline:
                apic.check_timer(time.monotonic_ns())
            pit = kvm.arch.vpit
            if pit is not None and pit.timer_deadline:
                pit.check_timer(time.monotonic_ns())
            if apic.pending_events:
                _accept_events(o)
            if o.mp_state in (U.KVM_MP_STATE_UNINITIALIZED, U.KVM_MP_STATE_INIT_RECEIVED):
                return "idle"
            if o.mp_state == U.KVM_MP_STATE_HALTED:
                if not _runnable(o):
                    return "idle"
                o.mp_state = U.KVM_MP_STATE_RUNNABLE
                o.st[L.HALTED] = 0
        _irqchip_entry(o)
    if o.check_entry:
        why = o.ops.check_entry(entry_state(o))
        if why is not None:
            _fail_entry(o, why, 0)
            return "user"
        o.check_entry = False
    if o.rep_tail is not None:
        code = _finish_rep_tail(o)
        if code == EXIT_BUDGET:
            return "ran"
    elif kvm.trace.on:
        code = _traced_run(o, QUANTUM)
    else:
        code = core_run(o.st, o.pm_arr, QUANTUM)
    while code == EXIT_LOCKED:           # the VM ran threaded before (PM_SMP stays set)
        code = _locked_step(o)
    r = fast_exit(o.st, o.page, o.lay, code, kvm.arch.devmask)
    if r >= FAST_USER:
        o.pending = r - FAST_USER
        o.last_code = code
        if code == EXIT_IO:
            _rep_io_fixup(o)
        return "user"
    if code == EXIT_BUDGET:
        o.vcpu.stat[S.IRQ_EXITS] += 1
        return "ran"
    return "user" if _handle_exit(o, code) is not None else "ran"


def _run_round_robin(self, valid):
    """``SimBackend(deterministic=True)``: KVM_RUN on one vCPU runs every vCPU of the VM
    that is not waiting for userspace, in vcpu_idx order, QUANTUM instructions each, in
    this thread.  It returns when the calling vCPU has an exit; another vCPU's exit is
    parked in its own kvm_run page and returned by its next KVM_RUN.  The interleaving
    depends only on the guest and the order of KVM_RUN calls, never on host timing."""
    kvm = self.kvm
    try:
        while True:
            busy = False
            for vc in kvm.vcpus():
                o = vc.arch
                if o is not self and (o.parked is not None or o.waiting_user):
                    continue
                if o is not self and not vc.mutex.acquire(blocking=False):
                    continue
                try:
                    r = _slice(o)
                except OSError as e:
                    if o is self:
                        raise
                    o.parked = e.errno
                    continue
                finally:
                    if o is not self:
                        vc.mutex.release()
                if r == "user":
                    if o is self:
                        self.waiting_user = True
                        return _out(self, valid)
                    o.parked = 0
                    if o.mv64[36]:
                        _sync_regs_out(o, o.mv64[36])
                elif r == "ran":
                    busy = True
            if self.kicked or _signal_pending(self):
                return _intr(self, valid)
            if kvm.irqfds.items:
                kvm.irqfds.drain()
            if not busy:
                # everybody is halted: sleep until an interrupt, a timer or a kick
                timeout = 0.01
                for vc in kvm.vcpus():
                    a = vc.arch.apic
                    if a is not None and a.timer_deadline:
                        timeout = min(timeout, max(0.0, (a.timer_deadline -
                                                         time.monotonic_ns()) / 1e9))
                self.wake.wait(timeout)
                self.wake.clear()
    except KeyboardInterrupt:
        signals.pending()               # the SIGINT's wakeup byte: consumed with it
        _intr_fill(self)
        _out(self, valid)
        raise
