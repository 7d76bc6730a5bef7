"""kvmlab.cpu -- the simulated x86 silicon (numba), and its façade for the sim kernel.

Contract (as implemented; differences from the brief are marked ADJUSTED)::

    from kvmlab.cpu import Core, PhysMap, CoreExit, EXIT_IO, EXIT_MMIO, ...
    pm = PhysMap()                                   # one per VM, shared by its vCPUs' cores
    pm.set_slot(slot_id, gpa, host_uint8_array, readonly=False, dirty=None_or_uint64_words)
    pm.delete_slot(slot_id)                          # any change flushes every core's TLB on its next run
    pm.invalidate()                                  # ADDED: flush translations (after clearing a dirty log
                                                     #   nothing is needed: dirty-logged slots never take the fast path)
    pm.set_coalesced([(addr, size, pio), ...], ring_uint8_4096)   # ring=None disables
    core = Core(pm, vcpu_id=0)                       # reset state of reference §4.2
    core.get_regs() / core.set_regs(kvm_regs)        # kvmlab.uapi structs, copies
    core.get_sregs() / core.set_sregs(kvm_sregs)     # interrupt_bitmap <-> queued KVM_INTERRUPT vector
    core.get_msr(index) -> int | None ; core.set_msr(index, value) -> bool   (host writes)
    core.get_debugregs() -> dict(db=[4], dr6, dr7) ; core.set_debugregs(db=, dr6=, dr7=)   # ADJUSTED: dicts
    core.get_fpu() -> dict (x87/SSE not modelled: reset values)
    core.set_cpuid([(function, index, flags, eax, ebx, ecx, edx), ...])   # empty -> CPUID gives zeros
    core.run(budget) -> int                          # exit code; releases the GIL (nogil numba)
    core.exit                                        # decoded: .reason .name and one of
        .io = dict(direction, size, port, count, data)    data = OUT bytes (b'' for IN)
        .mmio = dict(gpa, len, is_write, data)            data = written bytes (b'' for reads)
        .debug = dict(exception, pc, dr6, dr7)
        .internal = dict(suberror, insn)                  suberror 1 EMULATION (insn bytes), 3 DELIVERY_EV
    core.complete_io(data)                           # IN: count*size bytes; MMIO read: len bytes
    core.queue_interrupt(vector)                     # KVM_INTERRUPT semantics: injected at next entry even if IF=0
    core.set_irq_line(vector | None) ; core.irq_acked   # ADDED for an in-kernel irqchip: taken when IF=1 and no
                                                     #   STI/MOV SS shadow; irq_acked returns (and clears) the vector taken
    core.queue_nmi() ; core.queue_exception(vector)
    core.interruptible -> bool                       # IF=1, no shadow, nothing queued
    core.request_interrupt_window = True             # -> EXIT_IRQ_WINDOW as soon as interruptible (upstream)
    core.halted -> bool                              # the last exit was HLT; run() clears it (the kernel blocks
                                                     #   the vCPU itself when it has an in-kernel irqchip)
    core.set_guest_debug(control, debugreg8)         # §9: SINGLESTEP, USE_SW_BP (int3 -> DEBUG exc 3, pc at the int3,
                                                     #   rip not advanced), USE_HW_BP exec + data watchpoints, INJECT_BP/DB
    core.translate(linear) -> (valid, physical)      # no side effects; physical 2**64-1 when invalid
    core.stats                                       # Stats: .instructions .pf_taken .tlb_flush .invlpg ... .array
    core.state / core.pm.pm                          # the int64 numpy arrays, usable from numba (kvmlab.cpu.run.run)
    pm.smp = True                                    # ADDED: vCPUs run concurrently -> locked instructions exit
    core.allow_locked = True                         # ADDED: the next locked instruction may run (cleared as it starts)
    core.x87_as_nop = True                           # only for conformance runs (sst286): D8 x87 forms check their
                                                     #   operand and leave the integer state alone; default: emulation failure
    core.fast = False                                # ADDED: every instruction on the reference interpreter (default True:
                                                     #   translated basic blocks run in front of it, kvmlab.cpu.fastexec;
                                                     #   same architectural results, tests/test_cpu_fastpath.py)

Exit codes equal the KVM_EXIT_* numbers where one exists (IO 2, DEBUG 4, HLT 5, MMIO 6,
IRQ_WINDOW 7, SHUTDOWN 8, INTERNAL_ERROR 17); EXIT_BUDGET = 100 and EXIT_LOCKED = 101 are
the core's own.  Atomicity: with ``pm.smp`` set, a LOCK-prefixed instruction with a memory
operand or an XCHG with a memory operand ends the run with EXIT_LOCKED before it executes
(rip on it, nothing changed) unless ``core.allow_locked`` is set; the caller takes its
VM-wide lock, sets allow_locked, runs with budget 1 (that instruction, or the event delivery
it faults into) and releases the lock.  Plain stores of other vCPUs are not serialised
against it.  With smp off (one vCPU) nothing of this happens.
Completion: after an IN or MMIO-read exit rip stays on the instruction; call complete_io()
and run() again, the instruction is replayed with the data.  OUT and MMIO writes complete
at the exit (rip already past the instruction); just run() again.  `rep outs` exits once
per element (rip kept on the instruction until rcx reaches 0), `rep ins` batches up to
1024 bytes / the page boundary.  A triple fault is EXIT_SHUTDOWN with the state kept
(VMX flavour), rip on the faulting instruction.

From numba: ``kvmlab.cpu.run.run(st, pm, budget) -> exit code`` with ``st = core.state`` and
``pm = core.pm.pm`` (int64 arrays; indices in kvmlab.cpu.layout).  The first call in a
process loads (or, on a cold cache, compiles) the core; ``python -m kvmlab.cpu`` warms it.
The cache lives in ``kvmlab/cpu/__pycache__/numba-<hash of the compiled modules>``, or the
user cache dir when the package is read-only, or ``$KVMLAB_CACHE_DIR``; one process compiles
while the others wait.  ``KVMLAB_BOUNDSCHECK=1`` (or ``NUMBA_BOUNDSCHECK=1``) builds a
bounds-checked core in its own cache directory.

Not implemented (each ends the run with EXIT_INTERNAL_ERROR, suberror 1, never a wrong
result): x87/MMX/SSE/AVX, VMX/SVM, task switches (task gates, IRET with NT, far JMP/CALL to
a TSS), virtual-8086 mode, XSAVE family, RDRAND, MONITOR/MWAIT.

Paging: the walk checks every reserved bit (#PF with RSVD|P): address bits at or above
MAXPHYADDR, large-page bits 20:13 / 29:13, PS in a PML4E and in a PDPTE without 1 GiB pages,
XD without EFER.NXE, PAE PDPTE bits, PSE-36 bits of a 4 MiB PDE.  MAXPHYADDR and 1 GiB pages
come from the CPUID table as for KVM's walker (core.set_cpuid: leaf 0x80000008 EAX[7:0], 36
without it; 0x80000001 EDX[26], and only if core.gbpages_supported).
I/O: IN/OUT/INS/OUTS at CPL > IOPL consult the TSS I/O bitmap (32- and 64-bit TSS; #GP(0)
for a set bit of any port accessed, a TSS limit below 0x67, or a first bitmap byte beyond the
limit, as KVM's emulator).
Call gates: far CALL/JMP through 16/32-bit gates (protected mode) and 64-bit gates (long
mode); a CALL to a more privileged non-conforming segment switches to the TSS stack of that
level (legacy: SS:ESP, copying the gate's parameter count; long mode: RSPn and a null SS)
and pushes the old SS:SP and CS:IP there; RETF returns.
Debug: the guest's own DR0-3 breakpoints fire: exec (DR7 Ln/Gn, R/W=00, LEN=00) as a #DB
fault before the instruction with DR6.Bn set, suppressed while RFLAGS.RF=1 (every
instruction clears RF as it starts, IRET loads it from the frame, and a fault's saved
RFLAGS has RF=1); data breakpoints as a #DB trap.
Simplified: PAE PDPTEs are read at walk time; an exec breakpoint on the instruction after
MOV SS/POP SS is not inhibited; DR7.GD (general detect) is ignored.
Vendor choices where Intel and AMD differ: BSF/BSR with a zero source leave the destination
unchanged, all 64 bits (AMD's documented behaviour; Intel clears the upper half of a 32-bit
destination).
Budget: every retired instruction and every delivered fault counts, so an exception storm
(a handler that faults at once) still returns EXIT_BUDGET.
"""
from .layout import (EXIT_BUDGET, EXIT_IO, EXIT_DEBUG, EXIT_HLT, EXIT_MMIO, EXIT_IRQ_WINDOW,  # noqa: F401
                     EXIT_SHUTDOWN, EXIT_INTERNAL_ERROR, EXIT_LOCKED, EXIT_NONE, STAT_NAMES)
from .core import Core, PhysMap, CoreExit, Stats  # noqa: F401
from .cachedir import CACHE_DIR  # noqa: F401

__all__ = ['Core', 'PhysMap', 'CoreExit', 'Stats', 'EXIT_BUDGET', 'EXIT_IO', 'EXIT_DEBUG',
           'EXIT_HLT', 'EXIT_MMIO', 'EXIT_IRQ_WINDOW', 'EXIT_SHUTDOWN', 'EXIT_INTERNAL_ERROR',
           'EXIT_LOCKED']
