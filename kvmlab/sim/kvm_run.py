"""arch/x86/kvm/x86.c (post_kvm_run_save, emulator_pio_in_out, vcpu_mmio_write/read,
complete_emulated_pio/mmio): writing the exit into the shared ``struct kvm_run`` page and
taking the VMM's answer back.

The hot part is compiled (numba, ``nogil``): one call copies the exit the CPU core left
in its state array into the kvm_run page with the kernel's byte layout (exit_reason,
the ``io``/``mmio`` union member, the PIO data page, ready_for_interrupt_injection,
if_flag, cr8, apic_base).  The core's layout offsets are passed in an array, not baked in,
so this module's numba cache stays valid when the core changes.
"""
from __future__ import annotations

import hashlib
import os

import numba
import numpy as np
from numba import types
from numba.core import caching
from numba.extending import intrinsic

from ..cpu import cachedir as _core_cache
from ..cpu import layout as L
from ..cpu.jit import ix
from ..cpu.hostptr import load32 as _load32
from ..cpu.hostptr import load64 as _load64
from ..cpu.run import run as _core_run
from . import stats as S

_HERE = os.path.abspath(__file__)
with open(_HERE, "rb") as _f:
    _STAMP = _core_cache.SOURCE_HASH + "-" + hashlib.sha256(_f.read()).hexdigest()[:16]


class _SimCacheLocator(caching._CacheLocator):
    """numba's disk cache for this module, keyed on this file *and* the CPU core's sources:
    ``enter`` links the core's ``run``, so a change to the core must recompile it."""

    def __init__(self, py_func, py_file):
        self._path = _core_cache.CACHE_DIR

    def get_cache_path(self):
        return self._path

    def get_source_stamp(self):
        return _STAMP

    def get_disambiguator(self):
        return "sim"

    @classmethod
    def from_function(cls, py_func, py_file):
        if os.path.abspath(py_file) != _HERE:
            return None
        return cls(py_func, py_file)


if _SimCacheLocator not in caching.CacheImpl._locator_classes:
    caching.CacheImpl._locator_classes.insert(0, _SimCacheLocator)

# indices into the LAY array
(I_EXIT_REASON, I_IO_DIR, I_IO_SIZE, I_IO_PORT, I_IO_COUNT, I_MMIO_GPA, I_MMIO_LEN,
 I_MMIO_WRITE, I_EXIT_DATA, I_RFLAGS, I_SHADOW, I_PEND_IRQ, I_PEND_EXC, I_CR8, I_APIC_BASE,
 I_COMP_KIND, I_COMP_N, I_COMP_GPA, I_COMP_DATA, I_DBG_EXC, I_DBG_PC, I_DBG_DR6, I_DBG_DR7,
 I_S_EXITS, I_S_IO, I_S_MMIO, I_S_HALT, I_S_EMUL, I_D_REP, I_D_MAP, I_D_OPC, I_REQ_WIN,
 I_PM_RING, I_PM_NZONES, I_PM_ZONES, I_N) = range(36)

LAY = np.zeros(I_N, np.int64)
for _i, _v in ((I_EXIT_REASON, L.EXIT_REASON), (I_IO_DIR, L.IO_DIR), (I_IO_SIZE, L.IO_SIZE),
               (I_IO_PORT, L.IO_PORT), (I_IO_COUNT, L.IO_COUNT), (I_MMIO_GPA, L.MMIO_GPA),
               (I_MMIO_LEN, L.MMIO_LEN), (I_MMIO_WRITE, L.MMIO_WRITE),
               (I_EXIT_DATA, L.EXIT_DATA), (I_RFLAGS, L.RFLAGS), (I_SHADOW, L.SHADOW),
               (I_PEND_IRQ, L.PEND_IRQ), (I_PEND_EXC, L.PEND_EXC), (I_CR8, L.CR8),
               (I_APIC_BASE, L.M_APIC_BASE), (I_COMP_KIND, L.COMP_KIND),
               (I_COMP_N, L.COMP_N), (I_COMP_GPA, L.COMP_GPA), (I_COMP_DATA, L.COMP_DATA),
               (I_DBG_EXC, L.DBG_EXC), (I_DBG_PC, L.DBG_PC), (I_DBG_DR6, L.DBG_DR6),
               (I_DBG_DR7, L.DBG_DR7), (I_S_EXITS, I_N + S.EXITS), (I_S_IO, I_N + S.IO_EXITS),
               (I_S_MMIO, I_N + S.MMIO_EXITS), (I_S_HALT, I_N + S.HALT_EXITS),
               (I_S_EMUL, I_N + S.INSN_EMULATION), (I_D_REP, L.D + L.D_REP),
               (I_D_MAP, L.D + L.D_MAP), (I_D_OPC, L.D + L.D_OPC),
               (I_REQ_WIN, L.REQ_IRQ_WIN), (I_PM_RING, L.PM_RING), (I_PM_NZONES, L.PM_NZONES),
               (I_PM_ZONES, L.PM_ZONES)):
    LAY[_i] = _v

KVM_EXIT_IO, KVM_EXIT_DEBUG, KVM_EXIT_HLT, KVM_EXIT_MMIO = 2, 4, 5, 6
# fast_exit's answer: FAST_USER + pending (0 none, 1 IN, 2 MMIO read) = kvm_run is filled,
# return to userspace; FAST_SLOW = the kernel must look at this exit in Python.
# enter_ctx adds FAST_REP when the exit is a REP INS/OUTS (the kernel's fixup is needed),
# and answers (NOT_ENTERED, FAST_SLOW) when kvm_run asks for more than a plain entry.
FAST_USER, FAST_SLOW, FAST_REP = 10, -1, 16
NOT_ENTERED = -2
# devmask bits
DEV_PIO, DEV_MMIO, DEV_APIC = 1, 2, 4     # DEV_MMIO also: a memslot without host memory
DEV_UNBACKED = 8                          # a memslot without host memory (with DEV_MMIO)


@intrinsic
def _core_run_call(typingctx, st, pm, budget):
    """``run(st, pm, budget)`` of the core, called through its symbol in the JIT engine
    instead of linking the core's whole call tree into this module: numba would otherwise
    optimise and emit all of the core a second time for ``enter_ctx`` (about 10 s of a cold
    compile), and cache a second copy of it.  So ``run`` must be loaded in the process
    before ``enter_ctx`` is (see ``_after_core``)."""
    args = (st, pm, budget)
    _core_run.compile(args)                  # the core's own root (or its cache entry)
    cres = _core_run.overloads[args]
    sig = cres.signature

    def codegen(context, builder, signature, llargs):
        return context.call_internal(builder, cres.fndesc, sig, llargs)
    return sig, codegen


def _after_core(disp):
    """``disp`` calls the core's ``run`` by symbol (``_core_run_call``): load or compile the
    core before ``disp`` is loaded from the cache or compiled."""
    compile_ = disp.compile

    def compile(sig):
        from ..cpu import core
        core._compiled()
        return compile_(sig)
    disp.compile = compile
    return disp


@numba.njit(cache=True, nogil=True)
def _put(page, off, v, n):
    for i in range(n):
        page[off + i] = (v >> (8 * i)) & 0xFF


@numba.njit(cache=True, nogil=True)
def fill_exit(st, page, lay, reason, pic_in_kernel):
    """``post_kvm_run_save`` + the exit's union member.  Returns 1 if the exit leaves an
    IN or MMIO read pending (completed on the next KVM_RUN), else 0."""
    rf = st[ix(lay[I_RFLAGS])]
    iflag = 1 if rf & 0x200 else 0
    ready = 1 if (iflag and st[ix(lay[I_SHADOW])] == 0 and st[ix(lay[I_PEND_IRQ])] < 0 and
                  st[ix(lay[I_PEND_EXC])] < 0) else 0
    _put(page, 8, reason, 4)
    page[12] = 1 if pic_in_kernel else ready
    page[13] = iflag
    page[14] = 0
    page[15] = 0
    _put(page, 16, st[ix(lay[I_CR8])], 8)
    _put(page, 24, st[ix(lay[I_APIC_BASE])], 8)
    pending = 0
    if reason == KVM_EXIT_IO:
        d = st[ix(lay[I_IO_DIR])]
        size = st[ix(lay[I_IO_SIZE])]
        count = st[ix(lay[I_IO_COUNT])]
        page[32] = d
        page[33] = size
        _put(page, 34, st[ix(lay[I_IO_PORT])], 2)
        _put(page, 36, count, 4)
        _put(page, 40, 4096, 8)
        n = size * count
        if d == 1:
            base = lay[I_EXIT_DATA]
            for i in range(n):
                page[4096 + i] = st[ix(base + i)]
        else:
            pending = 1
    elif reason == KVM_EXIT_MMIO:
        n = st[ix(lay[I_MMIO_LEN])]
        _put(page, 32, st[ix(lay[I_MMIO_GPA])], 8)
        _put(page, 48, n, 4)
        w = st[ix(lay[I_MMIO_WRITE])]
        page[52] = 1 if w else 0
        if w:
            base = lay[I_EXIT_DATA]
            for i in range(n):
                page[40 + i] = st[ix(base + i)]
        else:
            pending = 2
    elif reason == KVM_EXIT_DEBUG:
        _put(page, 32, st[ix(lay[I_DBG_EXC])], 4)
        _put(page, 36, 0, 4)
        _put(page, 40, st[ix(lay[I_DBG_PC])], 8)
        _put(page, 48, st[ix(lay[I_DBG_DR6])], 8)
        _put(page, 56, st[ix(lay[I_DBG_DR7])], 8)
    return pending


@numba.njit(cache=True, nogil=True)
def complete_from_page(st, page, lay, kind):
    """``complete_emulated_pio``/``complete_emulated_mmio``: hand the VMM's data (the PIO
    data page for IN, ``mmio.data`` for an MMIO read) to the core, which finishes the
    instruction on entry."""
    if kind == 1:
        n = st[ix(lay[I_IO_SIZE])] * st[ix(lay[I_IO_COUNT])]
        src = 4096
        key = st[ix(lay[I_IO_PORT])]
    else:
        n = st[ix(lay[I_MMIO_LEN])]
        src = 40
        key = st[ix(lay[I_MMIO_GPA])]
    base = lay[I_COMP_DATA]
    for i in range(n):
        st[ix(base + i)] = page[src + i]
    st[ix(lay[I_COMP_N])] = n
    st[ix(lay[I_COMP_GPA])] = key
    st[ix(lay[I_COMP_KIND])] = kind


def complete_with(st, kind, data: bytes):
    """The same, with data produced inside the kernel (an in-kernel device's read)."""
    n = len(data)
    st[L.COMP_DATA:L.COMP_DATA + n] = np.frombuffer(bytes(data), np.uint8)
    st[ix(L.COMP_N)] = n
    st[ix(L.COMP_GPA)] = st[ix(L.IO_PORT)] if kind == 1 else st[ix(L.MMIO_GPA)]
    st[ix(L.COMP_KIND)] = kind


@numba.njit(cache=True, nogil=True)
def fast_exit(st, page, lay, code, devmask):
    """The common exits without anything in the kernel to consult (no device on the bus
    the access goes to, no in-kernel irqchip): count them and fill kvm_run in one call.
    ``lay`` is the vCPU's stat buffer: the layout table, then struct kvm_vcpu_stat."""
    stat = lay
    if code == KVM_EXIT_IO:
        stat[lay[I_S_EXITS]] += 1
        stat[lay[I_S_IO]] += 1
        stat[lay[I_S_EMUL]] += 1
        if devmask & DEV_PIO:
            return FAST_SLOW
        return FAST_USER + fill_exit(st, page, lay, code, False)
    if code == KVM_EXIT_MMIO:
        stat[lay[I_S_EXITS]] += 1
        stat[lay[I_S_EMUL]] += 1
        if devmask & (DEV_MMIO | DEV_APIC):
            return FAST_SLOW
        stat[lay[I_S_MMIO]] += 1
        return FAST_USER + fill_exit(st, page, lay, code, False)
    if code == KVM_EXIT_HLT and not (devmask & DEV_APIC):
        stat[lay[I_S_EXITS]] += 1
        stat[lay[I_S_HALT]] += 1
        fill_exit(st, page, lay, code, False)
        return FAST_USER
    stat[lay[I_S_EXITS]] += 1
    return FAST_SLOW


# --------------------------------------------------------------------------------------
# the KVM_RUN hot path with integer arguments only
# --------------------------------------------------------------------------------------
# numba's dispatcher spends ~150 ns per array argument (type fingerprint + unboxing) and
# almost nothing per int, so the run loop passes one host address (``ctx``: a small
# int64 array of the vCPU's array addresses and sizes, built once by :func:`make_ctx`)
# and the compiled code rebuilds the array views from it.  The arrays stay alive as
# attributes of the vCPU (``KvmVcpuArch``) and are never resized or unmapped.
CTX_ST, CTX_ST_N, CTX_PM, CTX_PM_N, CTX_PAGE, CTX_PAGE_N, CTX_LAY, CTX_LAY_N, CTX_N = range(9)


def _ptr_intrinsic(ty):
    @intrinsic
    def ptr(typingctx, addr):
        sig = types.CPointer(ty)(types.int64)

        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], context.get_value_type(types.CPointer(ty)))
        return sig, codegen
    return ptr


_ptr_i64 = _ptr_intrinsic(types.int64)
_ptr_u8 = _ptr_intrinsic(types.uint8)


def make_ctx(st, pm, page, lay) -> np.ndarray:
    """The ``ctx`` array of :func:`enter_ctx` / :func:`complete_ctx` (keep it, and the
    arrays, alive while it is used; pass ``ctx.ctypes.data``)."""
    for a, dt in ((st, np.int64), (pm, np.int64), (page, np.uint8), (lay, np.int64)):
        if a.dtype != dt or a.ndim != 1 or not a.flags.c_contiguous or not a.flags.writeable:
            raise ValueError("make_ctx needs writable contiguous 1-d arrays of the run loop's dtypes")
    ctx = np.zeros(CTX_N, np.int64)
    ctx[:] = (st.ctypes.data, st.size, pm.ctypes.data, pm.size, page.ctypes.data, page.size,
              lay.ctypes.data, lay.size)
    return ctx


@numba.njit(cache=True, nogil=True)
def _views(ctx):
    st = numba.carray(_ptr_i64(_load64(ctx + 8 * CTX_ST)), _load64(ctx + 8 * CTX_ST_N))
    pm = numba.carray(_ptr_i64(_load64(ctx + 8 * CTX_PM)), _load64(ctx + 8 * CTX_PM_N))
    page = numba.carray(_ptr_u8(_load64(ctx + 8 * CTX_PAGE)), _load64(ctx + 8 * CTX_PAGE_N))
    lay = numba.carray(_ptr_i64(_load64(ctx + 8 * CTX_LAY)), _load64(ctx + 8 * CTX_LAY_N))
    return st, pm, page, lay


@numba.njit(cache=True, nogil=True)
def _rep_string(st, lay):
    """The instruction that exited is a REP INS/OUTS (x86_run._rep_string_io)."""
    return (st[ix(lay[I_D_REP])] != 0 and st[ix(lay[I_D_MAP])] == 0 and
            0x6C <= st[ix(lay[I_D_OPC])] <= 0x6F)


@numba.njit(cache=True, nogil=True)
def _full_ring_write(st, pm, lay, devmask):
    """The MMIO exit is a write that lies in a zone the core coalesces by itself, and the
    ring is (still) full: then the kernel's answer is known without the io bus -- the
    zone's device is the only one there (``coalesced_mmio.core_zones``), it finds no room
    and the write goes to userspace as KVM_EXIT_MMIO.  Not with an in-kernel LAPIC (it
    sees MMIO first) or a memslot without host memory (EFAULT)."""
    if devmask & (DEV_APIC | DEV_UNBACKED) or not st[ix(lay[I_MMIO_WRITE])]:
        return False
    ring = pm[ix(lay[I_PM_RING])]
    if ring == 0:
        return False
    gpa = st[ix(lay[I_MMIO_GPA])]
    n = st[ix(lay[I_MMIO_LEN])]
    hit = False
    for i in range(pm[ix(lay[I_PM_NZONES])]):
        z = lay[I_PM_ZONES] + 3 * i
        if pm[ix(z + 2)] == 0 and gpa >= pm[ix(z)] and gpa + n <= pm[ix(z)] + pm[ix(z + 1)]:
            hit = True
            break
    if not hit:
        return False
    first = _load32(ring)
    last = _load32(ring + 4)
    return last >= 170 or (last + 1) % 170 == first


@_after_core
@numba.njit(cache=True, nogil=True)
def _enter_views(st, pm, page, lay, budget, devmask):
    code = _core_run_call(st, pm, budget)
    r = fast_exit(st, page, lay, code, devmask)
    if r >= FAST_USER:
        if code == KVM_EXIT_IO and _rep_string(st, lay):
            r += FAST_REP
    elif code == KVM_EXIT_MMIO and _full_ring_write(st, pm, lay, devmask):
        # fast_exit counted the exit; what _handle_exit adds for a write the bus refused
        lay[lay[I_S_MMIO]] += 1
        r = FAST_USER + fill_exit(st, page, lay, code, False)
    return code, r


@_after_core
@numba.njit(cache=True, nogil=True)
def enter_ctx(ctx, budget, devmask, plain):
    """``vcpu_enter_guest`` for the common case, on the arrays of ``ctx``: run the core
    (GIL released), then count and fill the exit (``fast_exit``) without returning to
    Python in between.  When fast_exit filled kvm_run for an IO exit of a REP INS/OUTS,
    FAST_REP is added to its answer (the caller then runs ``_rep_io_fixup``).  Returns
    (core exit code, answer).

    ``plain`` = 1: the first entry of a KVM_RUN in the plain state (see
    ``x86_run.make_kvm_run``): if kvm_run has ``request_interrupt_window``,
    ``immediate_exit``, ``kvm_valid_regs`` or ``kvm_dirty_regs`` set, or an interrupt
    window is still requested in the core, nothing runs and the answer is
    (NOT_ENTERED, FAST_SLOW): the general path must handle this KVM_RUN.

    One function for both (each such function is one more load from numba's cache at the
    first KVM_RUN of a process; the core itself is called by symbol, not linked in)."""
    st, pm, page, lay = _views(ctx)
    if plain:
        if page[0] or page[1] or st[ix(lay[I_REQ_WIN])]:
            return NOT_ENTERED, FAST_SLOW
        for i in range(288, 304):             # kvm_valid_regs, kvm_dirty_regs
            if page[i]:
                return NOT_ENTERED, FAST_SLOW
    return _enter_views(st, pm, page, lay, budget, devmask)


@numba.njit(cache=True, nogil=True)
def complete_ctx(ctx, kind):
    """:func:`complete_from_page` on the arrays of ``ctx``; returns 1 if the completed
    instruction is a REP INS (kind 1), else 0."""
    st, pm, page, lay = _views(ctx)
    rep = 1 if kind == 1 and _rep_string(st, lay) else 0
    complete_from_page(st, page, lay, kind)
    return rep


def entry_point(dispatcher, *argtypes):
    """The compiled entry of ``dispatcher`` for ``argtypes`` (loaded from the cache or
    compiled now): called directly it skips the dispatcher's per-call type matching.
    Only for arguments that always have these types."""
    try:
        return dispatcher.compile(tuple(argtypes))
    except Exception:       # an unexpected numba: the dispatcher itself works the same
        return dispatcher
