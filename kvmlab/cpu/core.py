"""Core and PhysMap: the thin Python façade over the numba state arrays."""
import enum
import sys
import time

import numpy as np

from . import layout as L
from .cachedir import CACHE_DIR, is_warm


class CoreExit(enum.IntEnum):
    BUDGET = L.EXIT_BUDGET
    IO = L.EXIT_IO
    DEBUG = L.EXIT_DEBUG
    HLT = L.EXIT_HLT
    MMIO = L.EXIT_MMIO
    IRQ_WINDOW = L.EXIT_IRQ_WINDOW
    SHUTDOWN = L.EXIT_SHUTDOWN
    INTERNAL_ERROR = L.EXIT_INTERNAL_ERROR
    LOCKED = L.EXIT_LOCKED


_jit = None


def _run_fn():
    return _jit[0] if _jit is not None else _compiled()[0]


def _compiled():
    """Import (and on a cold cache compile, with a progress message) the numba core."""
    global _jit
    if _jit is None:
        lock = _CompileLock()
        with lock:
            _jit = _load_or_compile(lock)
    return _jit


class _CompileLock:
    """One process compiles a cold cache; the others wait and then load it."""

    def __enter__(self):
        import os
        self.f = None
        self.waited = False
        try:
            import fcntl
            os.makedirs(CACHE_DIR, exist_ok=True)
            self.f = open(os.path.join(CACHE_DIR, 'compile.lock'), 'a')
            try:
                fcntl.flock(self.f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                print('kvmlab.cpu: another process is compiling the CPU core; waiting for it...',
                      file=sys.stderr, flush=True)
                self.waited = True
                fcntl.flock(self.f, fcntl.LOCK_EX)
        except (OSError, ImportError):
            self.f = None
        return self

    def __exit__(self, *exc):
        if self.f is not None:
            self.f.close()


def _load_or_compile(lock):
    if True:
        cold = not is_warm()
        t0 = time.time()
        if cold:
            print('kvmlab.cpu: compiling the CPU core (first run, cached in %s)...' % CACHE_DIR,
                  file=sys.stderr, flush=True)
        from . import run as run_mod
        from . import mmu, exec_sys
        st = np.zeros(L.STATE_SIZE, np.int64)
        pm = np.zeros(L.PM_SIZE, np.int64)
        if cold:
            # compile the other entry points now too (a warm start loads them on first use),
            # before run: compiled from Python they are cached as entry points of their own
            # (see jit.py), rather than only as parts of run
            st2 = np.zeros(L.STATE_SIZE, np.int64)
            mmu.translate(st2, pm, 0)
            exec_sys.msr_write(st2, 0x277, 0x0007040600070406, True)
            exec_sys.msr_read(st2, 0x277)
        run_mod.run(st, pm, 0)
        if cold:
            from .jit import progress
            progress.end()
            print('kvmlab.cpu: compiled in %.1f s' % (time.time() - t0), file=sys.stderr, flush=True)
        return (run_mod.run, mmu.translate, exec_sys.msr_read, exec_sys.msr_write)


class PhysMap:
    """Guest-physical memory of one VM: memslots and coalesced-MMIO zones (shared by the
    cores of its vCPUs).  Host buffers are kept alive here."""

    def __init__(self):
        self.pm = np.zeros(L.PM_SIZE, np.int64)
        self._keep = {}
        self._ring = None
        self._dirty = {}

    def _find(self, slot_id):
        for i in range(int(self.pm[L.PM_NSLOTS])):
            b = L.PM_SLOTS + i * L.PM_SLOT_FIELDS
            if self.pm[b + L.PS_USED] and self.pm[b + L.PS_ID] == slot_id:
                return b
        return -1

    def set_slot(self, slot_id, gpa, host, readonly=False, dirty=None):
        """Map host (a C-contiguous uint8 array) at guest-physical gpa.  dirty: uint64 words
        (one bit per 4 KiB page) the core sets on every guest write, or None."""
        if not isinstance(host, np.ndarray) or host.dtype != np.uint8 or host.ndim != 1 \
                or not host.flags['C_CONTIGUOUS']:
            raise ValueError('host must be a 1-D C-contiguous numpy uint8 array')
        if gpa < 0 or gpa % 4096 or host.size % 4096 or host.size == 0:
            raise ValueError('gpa and size must be page aligned and size > 0')
        if dirty is not None:
            if not isinstance(dirty, np.ndarray) or dirty.dtype != np.uint64 or not dirty.flags['C_CONTIGUOUS']:
                raise ValueError('dirty must be a C-contiguous numpy uint64 array')
            if dirty.size * 64 < host.size // 4096:
                raise ValueError('dirty bitmap too small for the slot')
        for i in range(int(self.pm[L.PM_NSLOTS])):
            b = L.PM_SLOTS + i * L.PM_SLOT_FIELDS
            if self.pm[b + L.PS_USED] and self.pm[b + L.PS_ID] != slot_id:
                g, s = int(self.pm[b + L.PS_GPA]), int(self.pm[b + L.PS_SIZE])
                if gpa < g + s and g < gpa + host.size:
                    raise ValueError('slot overlaps slot %d' % int(self.pm[b + L.PS_ID]))
        b = self._find(slot_id)
        if b < 0:
            for i in range(int(self.pm[L.PM_NSLOTS])):
                bb = L.PM_SLOTS + i * L.PM_SLOT_FIELDS
                if not self.pm[bb + L.PS_USED]:
                    b = bb
                    break
        if b < 0:
            n = int(self.pm[L.PM_NSLOTS])
            if n >= L.PM_MAXSLOTS:
                raise ValueError('too many memslots')
            b = L.PM_SLOTS + n * L.PM_SLOT_FIELDS
            self.pm[L.PM_NSLOTS] = n + 1
        self.pm[b + L.PS_GPA] = gpa
        self.pm[b + L.PS_SIZE] = host.size
        self.pm[b + L.PS_HOST] = host.ctypes.data
        self.pm[b + L.PS_FLAGS] = L.SLOT_READONLY if readonly else 0
        self.pm[b + L.PS_DIRTY] = 0 if dirty is None else dirty.ctypes.data
        self.pm[b + L.PS_DWORDS] = 0 if dirty is None else dirty.size
        self.pm[b + L.PS_ID] = slot_id
        self.pm[b + L.PS_USED] = 1
        self._keep[slot_id] = (host, dirty)
        self.pm[L.PM_GEN] += 1

    def delete_slot(self, slot_id):
        b = self._find(slot_id)
        if b < 0:
            raise KeyError(slot_id)
        self.pm[b + L.PS_USED] = 0
        self._keep.pop(slot_id, None)
        self.pm[L.PM_GEN] += 1

    @property
    def smp(self):
        """True: the VM's vCPUs may run concurrently in several threads; every core then
        ends its run with EXIT_LOCKED before a LOCKed read-modify-write or an XCHG with a
        memory operand (see Core.allow_locked)."""
        return bool(self.pm[L.PM_SMP])

    @smp.setter
    def smp(self, on):
        self.pm[L.PM_SMP] = 1 if on else 0

    def invalidate(self):
        """Drop every core's cached translations (e.g. after the VMM changed page tables
        behind the guest's back, or cleared a dirty log)."""
        self.pm[L.PM_GEN] += 1

    def set_coalesced(self, zones, ring):
        """zones: [(addr, size, pio)], ring: the 4096-byte kvm_coalesced_mmio_ring page."""
        if len(zones) > L.PM_MAXZONES:
            raise ValueError('at most %d coalesced zones' % L.PM_MAXZONES)
        if ring is not None:
            if not isinstance(ring, np.ndarray) or ring.dtype != np.uint8 or ring.size < 4096 \
                    or not ring.flags['C_CONTIGUOUS']:
                raise ValueError('ring must be a C-contiguous uint8 array of 4096 bytes')
        for i, (a, s, p) in enumerate(zones):
            if p not in (0, 1):
                raise ValueError('pio must be 0 or 1')
            z = L.PM_ZONES + 3 * i
            self.pm[z], self.pm[z + 1], self.pm[z + 2] = a, s, p
        self.pm[L.PM_NZONES] = len(zones)
        self._ring = ring
        self.pm[L.PM_RING] = 0 if ring is None else ring.ctypes.data


class _Exit:
    """Decoded exit information of the last run (see Core.exit)."""

    def __init__(self, core, code):
        st = core.state
        self.reason = code
        self.name = CoreExit(code).name if code in CoreExit._value2member_map_ else str(code)
        if code == L.EXIT_IO:
            n = int(st[L.IO_SIZE] * st[L.IO_COUNT])
            self.io = dict(direction=int(st[L.IO_DIR]), size=int(st[L.IO_SIZE]),
                           port=int(st[L.IO_PORT]), count=int(st[L.IO_COUNT]),
                           data=bytes(st[L.EXIT_DATA:L.EXIT_DATA + n].astype(np.uint8))
                           if st[L.IO_DIR] == 1 else b'')
        elif code == L.EXIT_MMIO:
            n = int(st[L.MMIO_LEN])
            self.mmio = dict(gpa=int(st[L.MMIO_GPA]) & (2 ** 64 - 1), len=n,
                             is_write=bool(st[L.MMIO_WRITE]),
                             data=bytes(st[L.EXIT_DATA:L.EXIT_DATA + n].astype(np.uint8))
                             if st[L.MMIO_WRITE] else b'')
        elif code == L.EXIT_DEBUG:
            self.debug = dict(exception=int(st[L.DBG_EXC]), pc=int(st[L.DBG_PC]) & (2 ** 64 - 1),
                              dr6=int(st[L.DBG_DR6]) & (2 ** 64 - 1), dr7=int(st[L.DBG_DR7]) & (2 ** 64 - 1))
        elif code == L.EXIT_INTERNAL_ERROR:
            n = int(st[L.INT_LEN])
            self.internal = dict(suberror=int(st[L.INT_SUBERR]),
                                 insn=bytes(st[L.INT_BYTES:L.INT_BYTES + n].astype(np.uint8)))

    def __repr__(self):
        extra = ''
        for k in ('io', 'mmio', 'debug', 'internal'):
            if hasattr(self, k):
                extra = ' %s=%r' % (k, getattr(self, k))
        return '<CoreExit %s%s>' % (self.name, extra)


_U64 = (1 << 64) - 1
_GPR_NAMES = ('rax', 'rcx', 'rdx', 'rbx', 'rsp', 'rbp', 'rsi', 'rdi',
              'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15')
_SEG_NAMES = (('es', L.ES), ('cs', L.CS), ('ss', L.SS), ('ds', L.DS), ('fs', L.FS), ('gs', L.GS),
              ('ldt', L.LDTR), ('tr', L.TR))


def _s64(v):
    v = int(v) & _U64
    return v - (1 << 64) if v >> 63 else v


class Stats:
    """Counters of one core: attribute access by name, `array` is the live numpy view."""

    def __init__(self, st):
        self.array = st[L.STAT:L.STAT + L.STAT_N]

    def __getattr__(self, name):
        try:
            return int(self.array[L.STAT_NAMES.index(name)])
        except ValueError:
            raise AttributeError(name) from None

    def as_dict(self):
        return {n: int(v) for n, v in zip(L.STAT_NAMES, self.array)}

    def __repr__(self):
        return 'Stats(%s)' % ', '.join('%s=%d' % kv for kv in self.as_dict().items())


class Core:
    """One vCPU's silicon.  See the package docstring for the contract."""

    def __init__(self, pm, vcpu_id=0):
        if not isinstance(pm, PhysMap):
            raise TypeError('pm must be a PhysMap')
        self.pm = pm
        self.vcpu_id = int(vcpu_id)
        self.state = np.zeros(L.STATE_SIZE, np.int64)
        self._cpuid = []
        self.gbpages_supported = True   # the silicon can map 1 GiB pages (when CPUID says so)
        self._code = None
        self._exit = None
        self.reset(_fresh=True)

    # ---- state ----
    def reset(self, _fresh=False):
        st = self.state
        if not _fresh:
            # (a new state array is already zero: not writing it again leaves its 2 MiB of
            # caches untouched until they are used, which keeps KVM_CREATE_VCPU fast)
            fast_off = st[L.FAST_OFF]
            st[:] = 0
            st[L.FAST_OFF] = fast_off
        st[L.RIP] = 0xFFF0
        st[L.RFLAGS] = 2
        st[L.RDX] = 0x600
        for name, i in _SEG_NAMES:
            b = L.SEG + 4 * i
            st[b + L.LIMIT] = 0xFFFF
            if name == 'cs':
                st[b + L.SEL] = 0xF000
                st[b + L.BASE] = 0xFFFF0000
                st[b + L.ATTR] = 0xB | L.A_S | L.A_P
            elif name == 'tr':
                st[b + L.ATTR] = 0xB | L.A_P
            elif name == 'ldt':
                st[b + L.ATTR] = 0x2 | L.A_P
            else:
                st[b + L.ATTR] = 0x3 | L.A_S | L.A_P
        st[L.GDTR_LIMIT] = 0xFFFF
        st[L.IDTR_LIMIT] = 0xFFFF
        st[L.CR0] = 0x60000010
        st[L.DR6] = 0xFFFF0FF0
        st[L.DR7] = 0x400
        st[L.M_PAT] = 0x0007040600070406
        st[L.M_MISC_ENABLE] = 1
        st[L.M_APIC_BASE] = 0xFEE00900 if self.vcpu_id == 0 else 0xFEE00800
        st[L.M_TSC] = 1000000
        st[L.VCPU_ID] = self.vcpu_id
        for k in (L.PEND_IRQ, L.PEND_EXC, L.IRQ_LINE, L.IRQ_ACKED, L.EXC_VEC, L.EXC_ERR):
            st[k] = -1
        st[L.PM_GEN_SEEN] = -1
        self._load_cpuid()
        self._update_mode()

    def _update_mode(self):
        st = self.state
        cs = int(st[L.SEG + 4 * L.CS + L.ATTR])
        st[L.PROT] = st[L.CR0] & 1
        st[L.MODE64] = 1 if (st[L.EFER] & 0x400) and (cs & L.A_L) else 0
        st[L.CPL] = 0 if not st[L.PROT] else (3 if st[L.RFLAGS] & L.F_VM else (cs >> 5) & 3)
        st[L.PM_GEN_SEEN] = -1      # flush the TLB on the next run

    def get_regs(self):
        from kvmlab.uapi import kvm_regs
        r = kvm_regs()
        st = self.state
        for i, n in enumerate(_GPR_NAMES):
            setattr(r, n, int(st[i]) & _U64)
        r.rip = int(st[L.RIP]) & _U64
        r.rflags = int(st[L.RFLAGS]) & _U64
        return r

    def set_regs(self, regs):
        st = self.state
        for i, n in enumerate(_GPR_NAMES):
            st[i] = _s64(getattr(regs, n))
        st[L.RIP] = _s64(regs.rip)
        st[L.RFLAGS] = _s64((int(regs.rflags) | 2) & ~L.F_VM)
        self._update_mode()

    def get_sregs(self):
        from kvmlab.uapi import kvm_sregs
        s = kvm_sregs()
        st = self.state
        for name, i in _SEG_NAMES:
            b = L.SEG + 4 * i
            a = int(st[b + L.ATTR])
            seg = getattr(s, name)
            seg.base = int(st[b + L.BASE]) & _U64
            seg.limit = int(st[b + L.LIMIT]) & 0xFFFFFFFF
            seg.selector = int(st[b + L.SEL]) & 0xFFFF
            seg.type = a & 0xF
            seg.s = (a >> 4) & 1
            seg.dpl = (a >> 5) & 3
            seg.present = (a >> 7) & 1
            seg.avl = (a >> 12) & 1
            seg.l = (a >> 13) & 1
            seg.db = (a >> 14) & 1
            seg.g = (a >> 15) & 1
            seg.unusable = (a >> 16) & 1
        s.gdt.base = int(st[L.GDTR_BASE]) & _U64
        s.gdt.limit = int(st[L.GDTR_LIMIT]) & 0xFFFF
        s.idt.base = int(st[L.IDTR_BASE]) & _U64
        s.idt.limit = int(st[L.IDTR_LIMIT]) & 0xFFFF
        for n, k in (('cr0', L.CR0), ('cr2', L.CR2), ('cr3', L.CR3), ('cr4', L.CR4),
                     ('cr8', L.CR8), ('efer', L.EFER), ('apic_base', L.M_APIC_BASE)):
            setattr(s, n, int(st[k]) & _U64)
        for i in range(4):
            s.interrupt_bitmap[i] = 0
        v = int(st[L.PEND_IRQ])
        if v >= 0:
            s.interrupt_bitmap[v // 64] = 1 << (v % 64)
        return s

    def set_sregs(self, sregs):
        """Load sregs (no consistency checks: KVM_SET_SREGS validation is the kernel's job)."""
        st = self.state
        for name, i in _SEG_NAMES:
            seg = getattr(sregs, name)
            b = L.SEG + 4 * i
            st[b + L.BASE] = _s64(seg.base)
            st[b + L.LIMIT] = int(seg.limit) & 0xFFFFFFFF
            st[b + L.SEL] = int(seg.selector) & 0xFFFF
            st[b + L.ATTR] = ((seg.type & 0xF) | ((seg.s & 1) << 4) | ((seg.dpl & 3) << 5)
                              | ((seg.present & 1) << 7) | ((seg.avl & 1) << 12) | ((seg.l & 1) << 13)
                              | ((seg.db & 1) << 14) | ((seg.g & 1) << 15) | ((seg.unusable & 1) << 16))
        st[L.GDTR_BASE] = _s64(sregs.gdt.base)
        st[L.GDTR_LIMIT] = sregs.gdt.limit
        st[L.IDTR_BASE] = _s64(sregs.idt.base)
        st[L.IDTR_LIMIT] = sregs.idt.limit
        for n, k in (('cr0', L.CR0), ('cr2', L.CR2), ('cr3', L.CR3), ('cr4', L.CR4),
                     ('cr8', L.CR8), ('efer', L.EFER), ('apic_base', L.M_APIC_BASE)):
            st[k] = _s64(getattr(sregs, n))
        for i in range(4):
            w = int(sregs.interrupt_bitmap[i])
            if w:
                st[L.PEND_IRQ] = i * 64 + (w & -w).bit_length() - 1
                break
        self._update_mode()

    def get_msr(self, index):
        _, _, rd, _ = _compiled()
        ok, v = rd(self.state, int(index) & 0xFFFFFFFF)
        return int(v) & _U64 if ok else None

    def set_msr(self, index, value):
        _, _, _, wr = _compiled()
        ok = wr(self.state, int(index) & 0xFFFFFFFF, _s64(value), True)
        self._update_mode()
        return bool(ok)

    def get_debugregs(self):
        st = self.state
        return dict(db=[int(st[L.DR0 + i]) & _U64 for i in range(4)],
                    dr6=int(st[L.DR6]) & _U64, dr7=int(st[L.DR7]) & _U64)

    def set_debugregs(self, db=None, dr6=None, dr7=None):
        st = self.state
        if db is not None:
            for i, v in enumerate(db[:4]):
                st[L.DR0 + i] = _s64(v)
        if dr6 is not None:
            st[L.DR6] = _s64(dr6)
        if dr7 is not None:
            st[L.DR7] = _s64(dr7)

    def get_fpu(self):
        """x87/SSE state is not modelled: the reset values KVM reports."""
        return dict(fcw=0x37F, fsw=0, ftw=0, mxcsr=0x1F80)

    def set_cpuid(self, entries):
        entries = [tuple(int(x) for x in e) for e in entries]
        if len(entries) > L.CPUID_MAX:
            raise ValueError('at most %d CPUID entries' % L.CPUID_MAX)
        for e in entries:
            if len(e) != 7:
                raise ValueError('CPUID entry is (function, index, flags, eax, ebx, ecx, edx)')
        self._cpuid = entries
        self._load_cpuid()

    def _load_cpuid(self):
        st = self.state
        st[L.CPUID:L.CPUID + 8 * L.CPUID_MAX] = 0
        for i, e in enumerate(self._cpuid):
            st[L.CPUID + 8 * i:L.CPUID + 8 * i + 7] = [x & 0xFFFFFFFF for x in e]
            st[L.CPUID + 8 * i + 7] = 1
        st[L.CPUID_COUNT] = len(self._cpuid)
        # what the page walk checks reserved bits against (KVM's cpuid_query_maxphyaddr and
        # guest_cpu_cap_has(GBPAGES): the guest's table, and the silicon for 1 GiB pages)
        top = next((e[3] for e in self._cpuid if e[0] == 0x80000000), 0)
        mp = next((e[3] & 0xFF for e in self._cpuid if e[0] == 0x80000008), 0) if top >= 0x80000008 else 0
        st[L.MAXPHYADDR] = min(max(mp, 32), 52) if mp else 36
        gb = any(e[0] == 0x80000001 and (e[6] >> 26) & 1 for e in self._cpuid)
        st[L.GBPAGES] = 1 if gb and self.gbpages_supported else 0

    # ---- running ----
    @property
    def allow_locked(self):
        """Set to True to let the next locked instruction run despite PhysMap.smp (the
        caller holds its VM-wide lock); the core clears it when that instruction starts."""
        return bool(self.state[L.LOCK_OK])

    @allow_locked.setter
    def allow_locked(self, on):
        self.state[L.LOCK_OK] = 1 if on else 0

    def run(self, budget):
        """Run until an exit or budget instructions; returns the exit code (CoreExit)."""
        code = int(_run_fn()(self.state, self.pm.pm, int(budget)))
        self._code = code
        self._exit = None
        return code

    @property
    def exit(self):
        """The decoded exit of the last run (built on first access), or None before any."""
        if self._exit is None and self._code is not None:
            self._exit = _Exit(self, self._code)
        return self._exit

    def complete_io(self, data):
        """Data for the pending IN (count*size bytes) or MMIO read (len bytes)."""
        st = self.state
        data = bytes(data)
        if self._code is None:
            raise RuntimeError('no exit to complete')
        if self._code == L.EXIT_IO and st[L.IO_DIR] == 0:
            n = int(st[L.IO_SIZE] * st[L.IO_COUNT])
            kind, key = 1, int(st[L.IO_PORT])
        elif self._code == L.EXIT_MMIO and not st[L.MMIO_WRITE]:
            n = int(st[L.MMIO_LEN])
            kind, key = 2, int(st[L.MMIO_GPA])
        else:
            raise RuntimeError('the last exit was not an IN or an MMIO read')
        if len(data) != n:
            raise ValueError('expected %d bytes, got %d' % (n, len(data)))
        st[L.COMP_DATA:L.COMP_DATA + n] = np.frombuffer(data, np.uint8)
        st[L.COMP_N] = n
        st[L.COMP_GPA] = key
        st[L.COMP_KIND] = kind

    def queue_interrupt(self, vector):
        """KVM_INTERRUPT: injected at the next entry regardless of IF (replaces a queued one)."""
        if not 0 <= vector < 256:
            raise ValueError('vector must be 0..255')
        self.state[L.PEND_IRQ] = vector

    def set_irq_line(self, vector):
        """In-kernel irqchip INTR: vector taken when IF=1 and no shadow (-1 clears).  The
        vector taken is reported in `irq_acked` (then -1 again in the line)."""
        self.state[L.IRQ_LINE] = -1 if vector is None else int(vector)

    @property
    def irq_acked(self):
        v = int(self.state[L.IRQ_ACKED])
        self.state[L.IRQ_ACKED] = -1
        return None if v < 0 else v

    def queue_nmi(self):
        self.state[L.PEND_NMI] = 1

    def queue_exception(self, vector):
        """Inject an exception without error code at the next entry (KVM_GUESTDBG_INJECT_BP...)."""
        self.state[L.PEND_EXC] = int(vector)

    @property
    def interruptible(self):
        st = self.state
        return bool(st[L.RFLAGS] & L.F_IF) and st[L.SHADOW] == 0 and st[L.PEND_IRQ] < 0 \
            and st[L.PEND_EXC] < 0

    @property
    def request_interrupt_window(self):
        return bool(self.state[L.REQ_IRQ_WIN])

    @request_interrupt_window.setter
    def request_interrupt_window(self, v):
        self.state[L.REQ_IRQ_WIN] = 1 if v else 0

    @property
    def halted(self):
        return bool(self.state[L.HALTED])

    @property
    def fast(self):
        """True (default): translated basic blocks run in front of the per-instruction
        interpreter (kvmlab.cpu.fastexec); False: every instruction on the reference path.
        The architectural results are the same either way; reset() keeps the setting."""
        return not self.state[L.FAST_OFF]

    @fast.setter
    def fast(self, on):
        self.state[L.FAST_OFF] = 0 if on else 1

    @property
    def x87_as_nop(self):
        return bool(self.state[L.X87_NOP])

    @x87_as_nop.setter
    def x87_as_nop(self, v):
        self.state[L.X87_NOP] = 1 if v else 0

    def set_guest_debug(self, control, debugreg=None):
        st = self.state
        st[L.GDBG_CTRL] = int(control) & 0xFFFFFFFF
        dr = list(debugreg or [0] * 8) + [0] * 8
        for i in range(8):
            st[L.GDBG_DR + i] = _s64(dr[i])
        if control & 0x80000:            # KVM_GUESTDBG_INJECT_BP
            st[L.PEND_EXC] = 3
        elif control & 0x40000:          # KVM_GUESTDBG_INJECT_DB
            st[L.PEND_EXC] = 1

    def translate(self, linear):
        """KVM_TRANSLATE: (valid, physical) with no side effects."""
        _, tr, _, _ = _compiled()
        ok, phys = tr(self.state, self.pm.pm, _s64(linear))
        return bool(ok), int(phys) & _U64

    @property
    def stats(self):
        return Stats(self.state)

    def tlb(self):
        """The software TLB as it is now: a TlbView with the valid entries, the hit/miss
        counters and what flushed it last (read-only copies; nothing is compiled)."""
        return TlbView(self.state)


_FLUSH_NAMES = {L.ST_FLUSH_CR3: 'MOV to CR3', L.ST_FLUSH_CR0: 'CR0.PG/WP/PE change',
                L.ST_FLUSH_CR4: 'CR4 paging bit change', L.ST_FLUSH_EFER: 'EFER write',
                L.ST_FLUSH_SLOTS: 'memslot change', L.ST_INVLPG: 'INVLPG (one page)'}


class TlbEntry:
    """One cached translation: a 4 KiB linear page to a guest-physical page, with the
    permissions of the whole walk (AND of R/W and U/S, OR of NX) and the global bit."""

    __slots__ = ('index', 'linear', 'physical', 'writable', 'user', 'nx', 'dirty', 'global_',
                 'has_host_page')

    def __init__(self, index, linear, physical, flags, host):
        self.index = index
        self.linear = linear
        self.physical = physical
        self.writable = bool(flags & L.TLBF_W)
        self.user = bool(flags & L.TLBF_U)
        self.nx = bool(flags & L.TLBF_NX)
        self.dirty = bool(flags & L.TLBF_D)
        self.global_ = bool(flags & L.TLBF_G)
        self.has_host_page = host >= 0

    def __repr__(self):
        bits = ''.join(c if on else '-' for c, on in (
            ('W', self.writable), ('U', self.user), ('X', not self.nx), ('D', self.dirty),
            ('G', self.global_)))
        return f'TlbEntry(slot={self.index}, {self.linear:#x} -> {self.physical:#x}, {bits})'


class TlbView:
    """A snapshot of a core's software TLB (256 direct-mapped entries of one 4 KiB page)."""

    def __init__(self, st):
        self.hits = int(st[L.STAT + L.ST_TLB_HIT])
        self.misses = int(st[L.STAT + L.ST_TLB_MISS])
        self.flushes = int(st[L.STAT + L.ST_TLB_FLUSH])
        self.invlpg = int(st[L.STAT + L.ST_INVLPG])
        self.flushes_by_cause = {_FLUSH_NAMES[i]: int(st[L.STAT + i]) for i in (
            L.ST_FLUSH_CR3, L.ST_FLUSH_CR0, L.ST_FLUSH_CR4, L.ST_FLUSH_EFER, L.ST_FLUSH_SLOTS,
            L.ST_INVLPG)}
        why = int(st[L.TLB_LAST_FLUSH])
        self.last_flush = _FLUSH_NAMES.get(why)
        rip = int(st[L.TLB_LAST_FLUSH_RIP])
        self.last_flush_rip = None if why == 0 or rip < 0 else rip & _U64
        self.entries = []
        for i in range(L.TLB_N):
            e = L.TLB + 4 * i
            tag = int(st[e])
            if tag & 1:
                self.entries.append(TlbEntry(i, (tag & ~0xFFF) & _U64, int(st[e + 1]) & _U64,
                                             int(st[e + 3]), int(st[e + 2])))

    def lookup(self, linear):
        """The entry that translates linear, or None (a miss: the next access walks)."""
        page = linear & ~0xFFF & _U64
        for e in self.entries:
            if e.linear == page:
                return e
        return None

    def __repr__(self):
        return (f'TlbView({len(self.entries)} entries, hits={self.hits}, misses={self.misses}, '
                f'flushes={self.flushes}, invlpg={self.invlpg}, last flush: {self.last_flush})')
