"""virt/kvm/eventfd.c: irqfd (eventfd -> interrupt) and ioeventfd (guest write -> eventfd).

Both work on real eventfds (``os.eventfd``), as on the hardware backend:

* **ioeventfd** (``struct _ioeventfd``): a device on the PIO or MMIO bus.  A guest write
  that matches address, length (0 = any) and, with DATAMATCH, the value, increments the
  eventfd counter inside the kernel; the guest continues, userspace sees no exit.
* **irqfd** (``struct kvm_kernel_irqfd``): the kernel waits on the eventfd; each signal
  pulses the GSI (assert + de-assert), or with RESAMPLE asserts it until the guest EOIs,
  then de-asserts it and signals ``resamplefd``.  The kernel is woken by the eventfd's wait
  queue; the simulated kernel has a per-VM worker thread (``kvm-irqfd``) that polls the
  irqfds' eventfds and does the injection work item (``irqfd_inject``), so another thread
  (or another process) can interrupt a vCPU that is halted inside KVM_RUN.  KVM_RUN also
  drains pending irqfds synchronously at entry, so an eventfd written before KVM_RUN is
  delivered on entry, deterministically.
"""
from __future__ import annotations

import errno
import os
import select
import threading

from .. import uapi as U
from .iobus import (KVM_FAST_MMIO_BUS, KVM_MMIO_BUS, KVM_PIO_BUS, KVM_VIRTIO_CCW_NOTIFY_BUS,
                    KvmIoDevice, kvm_io_bus_register_dev, kvm_io_bus_unregister_dev)


# --------------------------------------------------------------------------------------
# struct eventfd_ctx
# --------------------------------------------------------------------------------------
class EventfdCtx:
    """The kernel's reference to an eventfd: a private dup of the fd (so it survives the
    user closing theirs), identified by the kernel's ``eventfd-id``."""
    __slots__ = ("fd", "id", "refs")

    def __init__(self, fd, ident):
        self.fd, self.id, self.refs = fd, ident, 1

    def signal(self, n=1):
        try:
            os.eventfd_write(self.fd, n)
        except OSError:
            pass   # the kernel's eventfd_signal saturates; it never fails the guest

    def put(self):
        self.refs -= 1
        if self.refs == 0 and self.fd >= 0:
            try:
                os.close(self.fd)
            finally:
                self.fd = -1

    def __eq__(self, other):
        return isinstance(other, EventfdCtx) and other.id == self.id

    def __hash__(self):
        return hash(self.id)

    def __repr__(self):
        return f"eventfd(id={self.id})"


def eventfd_ctx_fdget(fd: int, what: str = "fd") -> EventfdCtx:
    """EBADF if ``fd`` is not an open file descriptor, EINVAL if it is not an eventfd."""
    if fd < 0 or fd > 0x7FFFFFFF:
        raise OSError(errno.EBADF, f"{what} {fd} is not an open file descriptor; "
                                   "create one with os.eventfd(0)")
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        raise OSError(errno.EBADF, f"{what} {fd} is not an open file descriptor; "
                                   "create one with os.eventfd(0)") from None
    if target != "anon_inode:[eventfd]":
        raise OSError(errno.EINVAL, f"{what} {fd} is not an eventfd ({target}); "
                                    "create one with os.eventfd(0)")
    ident = None
    try:
        with open(f"/proc/self/fdinfo/{fd}") as f:
            for line in f:
                if line.startswith("eventfd-id:"):
                    ident = int(line.split()[1])
    except OSError:
        pass
    dup = os.dup(fd)
    os.set_inheritable(dup, False)
    if ident is None:        # old kernels: fall back to the fd number
        ident = ("fd", fd)
    return EventfdCtx(dup, ident)


# --------------------------------------------------------------------------------------
# ioeventfd
# --------------------------------------------------------------------------------------
class Ioeventfd(KvmIoDevice):
    """``struct _ioeventfd``."""
    __slots__ = ("addr", "length", "eventfd", "datamatch", "wildcard", "bus_idx", "hits")

    def __init__(self, addr, length, eventfd, datamatch, wildcard, bus_idx):
        self.addr, self.length, self.eventfd = addr, length, eventfd
        self.datamatch, self.wildcard, self.bus_idx = datamatch, wildcard, bus_idx
        self.hits = 0

    name = "ioeventfd"

    def in_range(self, addr, length, data) -> bool:
        if addr != self.addr:
            return False
        if not self.length:
            return True
        if length != self.length:
            return False
        if self.wildcard:
            return True
        return int.from_bytes(bytes(data[:length]), "little") == self.datamatch

    def write(self, vcpu, addr, length, data):
        if not self.in_range(addr, length, data):
            return False
        self.hits += 1
        self.eventfd.signal(1)
        tr = vcpu.kvm.trace if vcpu is not None else None
        if tr is not None and tr.on:
            tr.emit(vcpu, "kvm_ioeventfd", bus=("mmio", "pio")[self.bus_idx == KVM_PIO_BUS],
                    addr=addr, len=length)
        return True

    def __repr__(self):
        bus = {KVM_PIO_BUS: "pio", KVM_MMIO_BUS: "mmio", KVM_FAST_MMIO_BUS: "fast_mmio"}.get(
            self.bus_idx, "ccw")
        dm = "any" if self.wildcard else f"{self.datamatch:#x}"
        return (f"ioeventfd({bus} {self.addr:#x} len={self.length} datamatch={dm} "
                f"{self.eventfd} hits={self.hits})")


def _bus_from_flags(flags):
    if flags & U.KVM_IOEVENTFD_FLAG_PIO:
        return KVM_PIO_BUS
    if flags & U.KVM_IOEVENTFD_FLAG_VIRTIO_CCW_NOTIFY:
        return KVM_VIRTIO_CCW_NOTIFY_BUS
    return KVM_MMIO_BUS


def kvm_ioeventfd(kvm, datamatch, addr, length, fd, flags):
    bus_idx = _bus_from_flags(flags)
    if flags & U.KVM_IOEVENTFD_FLAG_DEASSIGN:
        ret = _deassign_idx(kvm, bus_idx, datamatch, addr, length, fd, flags)
        if not length and bus_idx == KVM_MMIO_BUS:
            try:
                _deassign_idx(kvm, KVM_FAST_MMIO_BUS, datamatch, addr, length, fd, flags)
            except OSError:
                pass
        return ret
    if length not in (0, 1, 2, 4, 8):
        raise OSError(errno.EINVAL, f"kvm_ioeventfd.len must be 0 (any), 1, 2, 4 or 8, not {length}")
    if addr + length > 0xFFFFFFFFFFFFFFFF:
        raise OSError(errno.EINVAL, f"kvm_ioeventfd addr {addr:#x} + len {length} wraps around "
                                    "the address space")
    if flags & ~U.KVM_IOEVENTFD_VALID_FLAG_MASK:
        raise OSError(errno.EINVAL, f"unknown kvm_ioeventfd flags {flags:#x}; valid are "
                                    "DATAMATCH=1, PIO=2, DEASSIGN=4")
    if not length and flags & U.KVM_IOEVENTFD_FLAG_DATAMATCH:
        raise OSError(errno.EINVAL, "an ioeventfd with len 0 (any length) cannot use DATAMATCH; "
                                    "give a length of 1, 2, 4 or 8")
    _assign_idx(kvm, bus_idx, datamatch, addr, length, fd, flags)
    if not length and bus_idx == KVM_MMIO_BUS:
        _assign_idx(kvm, KVM_FAST_MMIO_BUS, datamatch, addr, length, fd, flags)
    return 0


def _collides(a: Ioeventfd, p: Ioeventfd) -> bool:
    return (a.bus_idx == p.bus_idx and a.addr == p.addr and
            (not a.length or not p.length or
             (a.length == p.length and (a.wildcard or p.wildcard or a.datamatch == p.datamatch))))


def _assign_idx(kvm, bus_idx, datamatch, addr, length, fd, flags):
    ctx = eventfd_ctx_fdget(fd, "kvm_ioeventfd.fd")
    wildcard = not (flags & U.KVM_IOEVENTFD_FLAG_DATAMATCH)
    p = Ioeventfd(addr, length, ctx, 0 if wildcard else datamatch, wildcard, bus_idx)
    with kvm.slots_lock:
        for q in kvm.ioeventfds:
            if _collides(q, p):
                ctx.put()
                raise OSError(errno.EEXIST, f"an ioeventfd for this address already exists ({q}); "
                              "deassign it first or use a different length/datamatch")
        try:
            kvm_io_bus_register_dev(kvm, bus_idx, addr, length, p, is_ioeventfd=True)
        except OSError:
            ctx.put()
            raise
        kvm.ioeventfds.append(p)


def _deassign_idx(kvm, bus_idx, datamatch, addr, length, fd, flags):
    ctx = eventfd_ctx_fdget(fd, "kvm_ioeventfd.fd")
    wildcard = not (flags & U.KVM_IOEVENTFD_FLAG_DATAMATCH)
    try:
        with kvm.slots_lock:
            for p in kvm.ioeventfds:
                if (p.bus_idx != bus_idx or p.eventfd != ctx or p.addr != addr or
                        p.length != length or p.wildcard != wildcard):
                    continue
                if not p.wildcard and p.datamatch != datamatch:
                    continue
                kvm_io_bus_unregister_dev(kvm, bus_idx, p, is_ioeventfd=True)
                kvm.ioeventfds.remove(p)
                p.eventfd.put()
                return 0
    finally:
        ctx.put()
    raise OSError(errno.ENOENT, "no ioeventfd matches this eventfd, address, length and "
                                "datamatch; pass exactly what you assigned")


# --------------------------------------------------------------------------------------
# irqfd
# --------------------------------------------------------------------------------------
class KvmKernelIrqfd:
    """``struct kvm_kernel_irqfd``."""
    __slots__ = ("kvm", "gsi", "eventfd", "resamplefd", "injections")

    def __init__(self, kvm, gsi, eventfd, resamplefd):
        self.kvm, self.gsi, self.eventfd, self.resamplefd = kvm, gsi, eventfd, resamplefd
        self.injections = 0

    def inject(self):
        """``irqfd_inject``: the work item run when the eventfd was signalled."""
        kvm = self.kvm
        self.injections += 1
        if self.resamplefd is None:
            kvm.set_irq(irqfd_source(kvm), self.gsi, 1)
            kvm.set_irq(irqfd_source(kvm), self.gsi, 0)
        else:
            kvm.set_irq(resample_source(kvm), self.gsi, 1)

    def __repr__(self):
        rs = f" resamplefd={self.resamplefd}" if self.resamplefd is not None else ""
        return f"irqfd(gsi={self.gsi} {self.eventfd}{rs} injections={self.injections})"


def irqfd_source(kvm):
    return 0          # KVM_USERSPACE_IRQ_SOURCE_ID


def resample_source(kvm):
    return 1          # KVM_IRQFD_RESAMPLE_IRQ_SOURCE_ID


class KvmIrqfds:
    """``kvm->irqfds``: the list, its lock and the worker that waits on the eventfds."""

    def __init__(self, kvm):
        self.kvm = kvm
        self.lock = threading.Lock()
        self.items: list[KvmKernelIrqfd] = []
        self._wake = None
        self._thread = None
        self._stop = False

    # -- the worker -------------------------------------------------------------------
    def _ensure_worker(self):
        if self._thread is None:
            self._wake = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
            self._thread = threading.Thread(target=self._worker, name="kvm-irqfd", daemon=True)
            self._thread.start()
        else:
            os.eventfd_write(self._wake, 1)

    def _worker(self):
        while not self._stop:
            with self.lock:
                fds = {it.eventfd.fd: it for it in self.items}
            p = select.poll()
            p.register(self._wake, select.POLLIN)
            for fd in fds:
                p.register(fd, select.POLLIN)
            try:
                ready = p.poll()
            except OSError:
                continue
            for fd, ev in ready:
                if fd == self._wake:
                    try:
                        os.eventfd_read(self._wake)
                    except OSError:
                        pass
                    continue
                it = fds.get(fd)
                if it is not None and ev & select.POLLIN:
                    self._consume_and_inject(it)

    def _consume_and_inject(self, it):
        with self.lock:
            if it not in self.items or it.eventfd.fd < 0:
                return
            try:
                n = os.read(it.eventfd.fd, 8) if _nonblocking_readable(it.eventfd.fd) else None
            except OSError:
                n = None
        if n:
            it.inject()

    def drain(self):
        """Synchronously inject every irqfd whose eventfd is already signalled (KVM_RUN
        entry, deterministic mode)."""
        if not self.items:
            return
        with self.lock:
            items = list(self.items)
        for it in items:
            if it.eventfd.fd >= 0 and _nonblocking_readable(it.eventfd.fd):
                self._consume_and_inject(it)

    def shutdown(self):
        self._stop = True
        if self._wake is not None:
            os.eventfd_write(self._wake, 1)
            if self._thread is not None and self._thread is not threading.current_thread():
                self._thread.join(timeout=1.0)
            os.close(self._wake)
            self._wake = None
        with self.lock:
            for it in self.items:
                it.eventfd.put()
                if it.resamplefd is not None:
                    it.resamplefd.put()
            self.items.clear()


def _nonblocking_readable(fd) -> bool:
    try:
        r, _, _ = select.select([fd], [], [], 0)
    except (OSError, ValueError):
        return False
    return bool(r)


def kvm_irqfd(kvm, fd, gsi, flags, resamplefd):
    if flags & ~(U.KVM_IRQFD_FLAG_DEASSIGN | U.KVM_IRQFD_FLAG_RESAMPLE):
        raise OSError(errno.EINVAL, f"unknown kvm_irqfd flags {flags:#x}; valid are DEASSIGN=1, "
                                    "RESAMPLE=2")
    if flags & U.KVM_IRQFD_FLAG_DEASSIGN:
        return _irqfd_deassign(kvm, fd, gsi)
    return _irqfd_assign(kvm, fd, gsi, flags, resamplefd)


def _irqfd_assign(kvm, fd, gsi, flags, resamplefd):
    resample = bool(flags & U.KVM_IRQFD_FLAG_RESAMPLE)
    if not kvm.arch.irqchip_in_kernel():
        raise OSError(errno.EINVAL, "KVM_IRQFD needs an in-kernel irqchip; call "
                                    "KVM_CREATE_IRQCHIP before creating vCPUs")
    ctx = eventfd_ctx_fdget(fd, "kvm_irqfd.fd")
    rctx = None
    if resample:
        try:
            rctx = eventfd_ctx_fdget(resamplefd, "kvm_irqfd.resamplefd")
        except OSError:
            ctx.put()
            raise
    irqfd = KvmKernelIrqfd(kvm, gsi, ctx, rctx)
    irqfds = kvm.irqfds
    with irqfds.lock:
        for tmp in irqfds.items:
            if tmp.eventfd == ctx:
                ctx.put()
                if rctx is not None:
                    rctx.put()
                raise OSError(errno.EBUSY, f"this eventfd is already an irqfd ({tmp}); "
                                           "use one eventfd per interrupt line")
        irqfds.items.append(irqfd)
    if resample:
        kvm.arch.register_resampler(irqfd)
    irqfds._ensure_worker()
    # an event already pending before registration is delivered as if we had not missed it
    if _nonblocking_readable(ctx.fd):
        irqfds._consume_and_inject(irqfd)
    return 0


def _irqfd_deassign(kvm, fd, gsi):
    ctx = eventfd_ctx_fdget(fd, "kvm_irqfd.fd")
    irqfds = kvm.irqfds
    gone = []
    with irqfds.lock:
        for it in list(irqfds.items):
            if it.eventfd == ctx and it.gsi == gsi:
                irqfds.items.remove(it)
                gone.append(it)
    for it in gone:
        if it.resamplefd is not None:
            kvm.arch.unregister_resampler(it)
            it.resamplefd.put()
        it.eventfd.put()
    ctx.put()
    if gone and irqfds._wake is not None:
        os.eventfd_write(irqfds._wake, 1)
    return 0
