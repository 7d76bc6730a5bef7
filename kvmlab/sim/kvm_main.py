"""virt/kvm/kvm_main.c: /dev/kvm, the file operations of the VM and vCPU fds, ioctl dispatch.

``SimBackend`` is the simulated kernel as seen from userspace: it hands out file
descriptors and routes every ``ioctl(fd, request, arg)`` to the file's handler table,
exactly like ``kvm_dev_ioctl`` / ``kvm_vm_ioctl`` / ``kvm_vcpu_ioctl`` (with the arch
fallbacks ``kvm_arch_dev_ioctl`` / ``kvm_arch_vm_ioctl`` / ``kvm_arch_vcpu_ioctl``).
Unknown requests fail as the kernel fails them: EINVAL on /dev/kvm and vCPU fds, ENOTTY
on VM fds.  ``mmap`` of a vCPU fd is the kvm_run page + PIO page + coalesced ring page.

File descriptor numbers are real: each simulated file holds a placeholder OS fd (a
``/dev/null`` open), so its number never clashes with eventfds or other files, and is
released on ``close``.
"""
from __future__ import annotations

import errno
import os
import struct
import threading

from .. import hostmem
from .. import uapi as U
from . import coalesced_mmio, cpuid, eventfd, memslots, msrs
from . import stats as S
from .kvm_host import KVM_MAX_VCPU_IDS, KVM_MAX_VCPUS, Kvm, KvmVcpu, kvm_lock, vm_list

KVM_API_VERSION = 12
VCPU_MMAP_SIZE = 3 * 4096
ULONG = 0xFFFFFFFFFFFFFFFF


# --------------------------------------------------------------------------------------
# argument helpers (copy_from_user / copy_to_user)
# --------------------------------------------------------------------------------------
def user_buf(arg, size: int, what: str):
    """A writable byte view of an ioctl's struct argument (a bytearray, a ctypes structure,
    or an int host address registered in :mod:`kvmlab.hostmem`); EFAULT as the kernel."""
    if isinstance(arg, int):
        view = hostmem.lookup(arg, size) if arg else None
        if view is None:
            raise OSError(errno.EFAULT, f"{what}: argument {arg:#x} is not a pointer to "
                          f"{size} bytes kvmlab knows; pass the struct itself (a ctypes "
                          "structure or bytearray)")
        return memoryview(view)
    try:
        mv = memoryview(arg)
    except TypeError:
        raise OSError(errno.EFAULT, f"{what}: pass a ctypes structure or a bytearray, not "
                      f"{type(arg).__name__}") from None
    if mv.readonly:
        # like fcntl.ioctl with an immutable buffer: the kernel works on a copy, so whatever
        # it writes back is not seen by the caller
        mv = memoryview(bytearray(mv.cast("B") if mv.format != "B" or mv.ndim != 1 else mv))
        if len(mv) < size:
            raise OSError(errno.EFAULT, f"{what}: argument is {len(mv)} bytes, the struct has "
                          f"{size}")
        return mv
    if mv.ndim != 1 or mv.format != "B":
        mv = mv.cast("B")
    if len(mv) < size:
        raise OSError(errno.EFAULT, f"{what}: argument is {len(mv)} bytes, the struct has {size}")
    return mv


def int_arg(arg, what: str) -> int:
    if not isinstance(arg, int):
        raise OSError(errno.EINVAL, f"{what} takes an integer argument")
    return arg & ULONG


# --------------------------------------------------------------------------------------
# capabilities: kvm_vm_ioctl_check_extension_generic + kvm_vm_ioctl_check_extension (x86)
# --------------------------------------------------------------------------------------
def _caps(kvm):
    c = {
        U.KVM_CAP_USER_MEMORY: 1,
        U.KVM_CAP_DESTROY_MEMORY_REGION_WORKS: 1,
        U.KVM_CAP_JOIN_MEMORY_REGIONS_WORKS: 1,
        U.KVM_CAP_INTERNAL_ERROR_DATA: 1,
        U.KVM_CAP_IOEVENTFD: 1,
        U.KVM_CAP_IOEVENTFD_NO_LENGTH: 1,
        U.KVM_CAP_IOEVENTFD_ANY_LENGTH: 1,
        U.KVM_CAP_IRQFD: 1,
        U.KVM_CAP_CHECK_EXTENSION_VM: 1,
        U.KVM_CAP_COALESCED_MMIO: 2,            # KVM_COALESCED_MMIO_PAGE_OFFSET
        U.KVM_CAP_COALESCED_PIO: 1,
        U.KVM_CAP_NR_MEMSLOTS: memslots.KVM_USER_MEM_SLOTS,
        U.KVM_CAP_BINARY_STATS_FD: 1,
        U.KVM_CAP_SYNC_MMU: 1,
        U.KVM_CAP_SET_TSS_ADDR: 1,
        U.KVM_CAP_SET_IDENTITY_MAP_ADDR: 1,
        U.KVM_CAP_EXT_CPUID: 1,
        U.KVM_CAP_READONLY_MEM: 1,
        U.KVM_CAP_SET_BOOT_CPU_ID: 1,
        U.KVM_CAP_NR_VCPUS: min(os.cpu_count() or 1, KVM_MAX_VCPUS),
        U.KVM_CAP_MAX_VCPUS: KVM_MAX_VCPUS,
        U.KVM_CAP_MAX_VCPU_ID: KVM_MAX_VCPU_IDS,
    }
    from . import x86
    c.update(x86.arch_caps())
    return c


def check_extension(kvm, cap) -> int:
    cap = cap & 0xFFFFFFFF if isinstance(cap, int) else -1
    return _caps(kvm).get(cap, 0)


# --------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------
class KvmFile:
    kind = "file"

    def release(self):
        pass

    def mmap(self, length, offset):
        raise OSError(errno.ENODEV, f"a {self.kind} fd cannot be mmapped; mmap a vCPU fd to "
                                    "get its kvm_run page")


class KvmDevFile(KvmFile):
    """The file behind ``open("/dev/kvm")`` (``kvm_chardev_ops``)."""
    kind = "/dev/kvm"

    def __init__(self, backend):
        self.backend = backend

    def ioctl(self, request, arg):
        h = _DEV_IOCTLS.get(request)
        if h is None:
            raise OSError(errno.EINVAL, f"ioctl {request:#x} is not a /dev/kvm (system) ioctl; "
                                        "VM ioctls go to the fd KVM_CREATE_VM returned")
        return h(self, arg)


class KvmVmFile(KvmFile):
    """The anonymous file "kvm-vm" (``kvm_vm_fops``); holds one reference on ``struct kvm``."""
    kind = "VM"

    def __init__(self, backend, kvm: Kvm):
        self.backend, self.kvm = backend, kvm

    def ioctl(self, request, arg):
        h = _VM_IOCTLS.get(request)
        if h is None:
            raise OSError(errno.ENOTTY, f"ioctl {request:#x} is not a VM ioctl (KVM_RUN and "
                                        "register ioctls go to a vCPU fd)")
        return h(self, arg)

    def release(self):
        self.kvm.put()


class KvmVcpuFile(KvmFile):
    """The anonymous file "kvm-vcpu:N" (``kvm_vcpu_fops``); holds a reference on the VM."""
    kind = "vCPU"

    def __init__(self, backend, vcpu: KvmVcpu):
        self.backend, self.vcpu = backend, vcpu
        self.run = vcpu.arch.make_kvm_run()     # KVM_RUN without dispatch (x86_run.make_kvm_run)

    def ioctl(self, request, arg):
        if request == 0xAE80:                      # KVM_RUN, the hot path
            if arg:
                raise OSError(errno.EINVAL, "KVM_RUN takes no argument (pass 0)")
            return self.run()
        h = _VCPU_IOCTLS.get(request)
        if h is None:
            if (request >> 8) & 0xFF != U.KVMIO:
                raise OSError(errno.EINVAL, f"ioctl {request:#x} is not a KVM ioctl")
            raise OSError(errno.EINVAL, f"ioctl {request:#x} is not a vCPU ioctl (system ioctls "
                                        "go to /dev/kvm, VM ioctls to the VM fd)")
        v = self.vcpu
        with v.mutex:
            return h(v, arg)

    def mmap(self, length, offset):
        if offset < 0 or offset % 4096 or length <= 0:
            raise OSError(errno.EINVAL, "mmap of a vCPU fd needs a page-aligned offset and a "
                                        "positive length")
        if offset + length > VCPU_MMAP_SIZE:
            raise OSError(errno.EINVAL, f"the vCPU mapping is {VCPU_MMAP_SIZE} bytes "
                          "(KVM_GET_VCPU_MMAP_SIZE); the sim has no dirty ring pages beyond it")
        return memoryview(self.vcpu.run_map)[offset:offset + length]

    def release(self):
        self.vcpu.kvm.put()


# --------------------------------------------------------------------------------------
# the backend (the syscall layer)
# --------------------------------------------------------------------------------------
class SimBackend:
    """The simulated KVM kernel behind :class:`kvmlab.backend.Backend`.

    ``SimBackend(vendor="intel" | "amd")`` picks the ``kvm_x86_ops`` flavour (VMX or SVM).
    Extra, sim-only hooks used by the API layer: :meth:`kernel_view` (``VmFd.kernel``),
    :meth:`kick` (``VcpuFd.kick``) and :meth:`hardware_exit_code`.
    """
    name = "sim"

    def __init__(self, vendor: str = "intel", deterministic: bool = False):
        if vendor not in ("intel", "amd"):
            raise ValueError(f"vendor must be 'intel' (VMX) or 'amd' (SVM), not {vendor!r}")
        from .vendor import kvm_x86_ops_for
        self.vendor = vendor
        self.kvm_x86_ops = kvm_x86_ops_for(vendor)
        self.deterministic = deterministic
        self._files: dict[int, KvmFile] = {}
        self._runners = {}                 # vCPU fd -> its KVM_RUN (the hot path)
        self._lock = threading.Lock()

    # fds --------------------------------------------------------------------------------
    def _install(self, f: KvmFile) -> int:
        fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        with self._lock:
            self._files[fd] = f
            if isinstance(f, KvmVcpuFile):
                self._runners[fd] = f.run
        f.fd = fd
        return fd

    def _file(self, fd):
        try:
            return self._files[fd]
        except (KeyError, TypeError):
            raise OSError(errno.EBADF, f"fd {fd} is not an open KVM file of this simulated "
                                       "kernel") from None

    # syscalls ---------------------------------------------------------------------------
    def open_dev(self) -> int:
        return self._install(KvmDevFile(self))

    def ioctl(self, fd, request, arg=0):
        if request == 0xAE80 and not arg:              # KVM_RUN: straight to the vCPU
            run = self._runners.get(fd)
            if run is not None:
                return run()
        try:
            f = self._files[fd]
        except (KeyError, TypeError):
            raise OSError(errno.EBADF, f"fd {fd} is not an open KVM file of this simulated "
                                       "kernel") from None
        return f.ioctl(request, arg)

    def mmap(self, fd, length, offset=0):
        return self._file(fd).mmap(length, offset)

    def pread(self, fd, length, offset):
        f = self._file(fd)
        if not isinstance(f, S.StatsFile):
            raise OSError(errno.EINVAL, f"fd {fd} ({f.kind}) cannot be read; only binary stats "
                                        "fds (KVM_GET_STATS_FD) can")
        return f.pread(length, offset)

    def close(self, fd):
        with self._lock:
            f = self._files.pop(fd, None)
            self._runners.pop(fd, None)
        if f is None:
            raise OSError(errno.EBADF, f"fd {fd} is not open")
        try:
            os.close(fd)
        except OSError:
            pass
        f.release()

    # sim-only hooks ---------------------------------------------------------------------
    def kernel_view(self, vm_fd):
        """``VmFd.kernel``: the live ``struct kvm`` behind a VM fd, read-only."""
        f = self._file(vm_fd)
        if not isinstance(f, KvmVmFile):
            raise OSError(errno.EINVAL, f"fd {vm_fd} is not a VM fd")
        from .kernel_view import KernelView
        return KernelView(f.kvm)

    def vcpu_of(self, fd) -> KvmVcpu:
        f = self._file(fd)
        if not isinstance(f, KvmVcpuFile):
            raise OSError(errno.EINVAL, f"fd {fd} is not a vCPU fd")
        return f.vcpu

    def kick(self, vcpu_fd):
        """Make a KVM_RUN in another thread return with KVM_EXIT_INTR soon (like a signal
        sent to the vCPU thread: ``kvm_vcpu_kick``)."""
        self.vcpu_of(vcpu_fd).arch.kick()

    def hardware_exit_code(self, vcpu_fd):
        """The VMX exit reason / SVM exit code of the vCPU's last exit."""
        return self.vcpu_of(vcpu_fd).arch.last_hw_exit

    def set_deterministic(self, vm_fd, on=True):
        """Deterministic mode for one VM: KVM_RUN on any of its vCPUs runs all of them in
        the calling thread, round-robin (see ``x86_run._run_round_robin``)."""
        f = self._file(vm_fd)
        if not isinstance(f, KvmVmFile):
            raise OSError(errno.EINVAL, f"fd {vm_fd} is not a VM fd")
        f.kvm.arch.deterministic = bool(on)

    def entry_failure_rule(self, vcpu_fd):
        """After KVM_EXIT_FAIL_ENTRY: the sentence naming the VM-entry rule that failed
        (kvmlab extension; also NUL-terminated in the kvm_run page at offset 48)."""
        return getattr(self.vcpu_of(vcpu_fd).arch, "failed_entry_rule", None)

    def trace(self, fd):
        """The tracepoint buffer of the VM behind a VM or vCPU fd (``.enable()``)."""
        f = self._file(fd)
        kvm = f.kvm if isinstance(f, KvmVmFile) else self.vcpu_of(fd).kvm
        return kvm.trace

    @property
    def vm_list(self):
        """The global vm_list (every live ``struct kvm`` in this process)."""
        with kvm_lock:
            return list(vm_list)


# --------------------------------------------------------------------------------------
# system ioctls: kvm_dev_ioctl + kvm_arch_dev_ioctl
# --------------------------------------------------------------------------------------
def dev_get_api_version(f, arg):
    if arg:
        raise OSError(errno.EINVAL, "KVM_GET_API_VERSION takes no argument (pass 0)")
    return KVM_API_VERSION


def dev_create_vm(f, arg):
    vm_type = int_arg(arg, "KVM_CREATE_VM")
    if vm_type != 0:
        raise OSError(errno.EINVAL, f"VM type {vm_type} is not supported; x86 KVM_CREATE_VM "
                                    "takes type 0 (KVM_X86_DEFAULT_VM)")
    kvm = Kvm(vm_type, f.backend.kvm_x86_ops)
    kvm.backend = f.backend
    kvm.arch.deterministic = f.backend.deterministic
    return f.backend._install(KvmVmFile(f.backend, kvm))


def dev_check_extension(f, arg):
    return check_extension(None, arg)


def dev_get_vcpu_mmap_size(f, arg):
    if arg:
        raise OSError(errno.EINVAL, "KVM_GET_VCPU_MMAP_SIZE takes no argument (pass 0)")
    return VCPU_MMAP_SIZE


def dev_get_msr_index_list(f, arg):
    buf = user_buf(arg, 4, "KVM_GET_MSR_INDEX_LIST")
    return msrs.write_msr_list(buf, msrs.MSRS_TO_SAVE, "KVM_GET_MSR_INDEX_LIST")


def dev_get_msr_feature_index_list(f, arg):
    buf = user_buf(arg, 4, "KVM_GET_MSR_FEATURE_INDEX_LIST")
    return msrs.write_msr_list(buf, msrs.MSR_FEATURES, "KVM_GET_MSR_FEATURE_INDEX_LIST")


def dev_get_msrs(f, arg):
    buf = user_buf(arg, 8, "KVM_GET_MSRS")
    return msrs.msr_io(buf, lambda idx, data: (False, data), True)   # no feature MSRs


def dev_get_supported_cpuid(f, arg):
    buf = user_buf(arg, 8, "KVM_GET_SUPPORTED_CPUID")
    return cpuid.write_cpuid2(buf, cpuid.supported_cpuid(f.backend.vendor),
                              "KVM_GET_SUPPORTED_CPUID")


def dev_get_emulated_cpuid(f, arg):
    # every feature of the teaching CPU is in the supported table; nothing extra is emulated
    buf = user_buf(arg, 8, "KVM_GET_EMULATED_CPUID")
    nent = struct.unpack_from("<I", buf, 0)[0]
    if nent < 1:
        raise OSError(errno.E2BIG, "KVM_GET_EMULATED_CPUID: nent must be at least 1")
    struct.pack_into("<I", buf, 0, 0)
    return 0


_DEV_IOCTLS = {
    U.KVM_GET_API_VERSION: dev_get_api_version,
    U.KVM_CREATE_VM: dev_create_vm,
    U.KVM_CHECK_EXTENSION: dev_check_extension,
    U.KVM_GET_VCPU_MMAP_SIZE: dev_get_vcpu_mmap_size,
    U.KVM_GET_MSR_INDEX_LIST: dev_get_msr_index_list,
    U.KVM_GET_MSR_FEATURE_INDEX_LIST: dev_get_msr_feature_index_list,
    U.KVM_GET_MSRS: dev_get_msrs,
    U.KVM_GET_SUPPORTED_CPUID: dev_get_supported_cpuid,
    U.KVM_GET_EMULATED_CPUID: dev_get_emulated_cpuid,
}


# --------------------------------------------------------------------------------------
# VM ioctls: kvm_vm_ioctl + kvm_arch_vm_ioctl
# --------------------------------------------------------------------------------------
def vm_create_vcpu(f, arg):
    """``kvm_vm_ioctl_create_vcpu``."""
    kvm = f.kvm
    vcpu_id = int_arg(arg, "KVM_CREATE_VCPU")
    if vcpu_id >= KVM_MAX_VCPU_IDS:
        raise OSError(errno.EINVAL, f"vCPU id {vcpu_id} is out of range: ids are "
                                    f"0..{KVM_MAX_VCPU_IDS - 1} (KVM_CAP_MAX_VCPU_ID)")
    with kvm.lock:
        if kvm.created_vcpus >= kvm.max_vcpus:
            raise OSError(errno.EINVAL, f"this VM already has {kvm.max_vcpus} vCPUs "
                                        "(KVM_CAP_MAX_VCPUS)")
        if kvm.get_vcpu_by_id(vcpu_id) is not None:
            raise OSError(errno.EEXIST, f"vCPU {vcpu_id} already exists in this VM; each id "
                                        "can be created once")
        kvm.created_vcpus += 1
        try:
            vcpu = KvmVcpu(kvm, vcpu_id, kvm.online_vcpus)
        except BaseException:
            kvm.created_vcpus -= 1
            raise
        kvm.vcpu_array[vcpu.vcpu_idx] = vcpu
        kvm.get()                                   # the vCPU fd's reference
        fd = f.backend._install(KvmVcpuFile(f.backend, vcpu))
        kvm.online_vcpus += 1
        kvm.arch.vcpu_postcreate(vcpu)
    return fd


def vm_set_user_memory_region(f, arg):
    b = user_buf(arg, 32, "KVM_SET_USER_MEMORY_REGION")
    slot, flags, gpa, size, uaddr = struct.unpack_from("<IIQQQ", b, 0)
    return memslots.kvm_set_memory_region(f.kvm, slot, flags, gpa, size, uaddr)


def vm_get_dirty_log(f, arg):
    b = user_buf(arg, 16, "KVM_GET_DIRTY_LOG")
    slot, _, ptr = struct.unpack_from("<IIQ", b, 0)
    return memslots.kvm_get_dirty_log(f.kvm, slot, ptr)


def vm_register_coalesced_mmio(f, arg):
    b = user_buf(arg, 16, "KVM_REGISTER_COALESCED_MMIO")
    addr, size, pio = struct.unpack_from("<QII", b, 0)
    return coalesced_mmio.kvm_vm_ioctl_register_coalesced_mmio(f.kvm, addr, size, pio)


def vm_unregister_coalesced_mmio(f, arg):
    b = user_buf(arg, 16, "KVM_UNREGISTER_COALESCED_MMIO")
    addr, size, pio = struct.unpack_from("<QII", b, 0)
    return coalesced_mmio.kvm_vm_ioctl_unregister_coalesced_mmio(f.kvm, addr, size, pio)


def vm_ioeventfd(f, arg):
    b = user_buf(arg, 64, "KVM_IOEVENTFD")
    datamatch, addr, length, fd, flags = struct.unpack_from("<QQIiI", b, 0)
    return eventfd.kvm_ioeventfd(f.kvm, datamatch, addr, length, fd, flags)


def vm_irqfd(f, arg):
    b = user_buf(arg, 32, "KVM_IRQFD")
    fd, gsi, flags, resamplefd = struct.unpack_from("<iIIi", b, 0)
    return eventfd.kvm_irqfd(f.kvm, fd, gsi, flags, resamplefd)


def vm_check_extension(f, arg):
    return check_extension(f.kvm, arg)


def vm_get_stats_fd(f, arg):
    kvm = f.kvm
    kvm.get()
    return f.backend._install(S.StatsFile(kvm, kvm.stats_id, S.VM_DESCS, kvm.stat))


def vm_arch(name):
    """VM ioctls implemented in arch/x86/kvm/x86.c (kvm_arch_vm_ioctl)."""
    def h(f, arg):
        return getattr(f.kvm.arch, name)(arg)
    h.__name__ = name
    return h


_VM_IOCTLS = {
    U.KVM_CREATE_VCPU: vm_create_vcpu,
    U.KVM_SET_USER_MEMORY_REGION: vm_set_user_memory_region,
    U.KVM_GET_DIRTY_LOG: vm_get_dirty_log,
    U.KVM_REGISTER_COALESCED_MMIO: vm_register_coalesced_mmio,
    U.KVM_UNREGISTER_COALESCED_MMIO: vm_unregister_coalesced_mmio,
    U.KVM_IOEVENTFD: vm_ioeventfd,
    U.KVM_IRQFD: vm_irqfd,
    U.KVM_CHECK_EXTENSION: vm_check_extension,
    U.KVM_GET_STATS_FD: vm_get_stats_fd,
    U.KVM_SET_TSS_ADDR: vm_arch("set_tss_addr"),
    U.KVM_SET_IDENTITY_MAP_ADDR: vm_arch("set_identity_map_addr"),
    U.KVM_SET_BOOT_CPU_ID: vm_arch("set_boot_cpu_id"),
    U.KVM_CREATE_IRQCHIP: vm_arch("create_irqchip"),
    U.KVM_IRQ_LINE: vm_arch("irq_line"),
    U.KVM_IRQ_LINE_STATUS: vm_arch("irq_line_status"),
    U.KVM_GET_IRQCHIP: vm_arch("get_irqchip"),
    U.KVM_SET_IRQCHIP: vm_arch("set_irqchip"),
    U.KVM_SET_GSI_ROUTING: vm_arch("set_gsi_routing"),
    U.KVM_SIGNAL_MSI: vm_arch("signal_msi"),
    U.KVM_CREATE_PIT2: vm_arch("create_pit2"),
}


# --------------------------------------------------------------------------------------
# vCPU ioctls: kvm_vcpu_ioctl + kvm_arch_vcpu_ioctl (vcpu->mutex held)
# --------------------------------------------------------------------------------------
def vcpu_get_stats_fd(v, arg):
    v.kvm.get()
    return v.kvm.backend._install(S.StatsFile(v.kvm, v.stats_id, S.VCPU_DESCS, v.stat,
                                              refresh=v.arch.sync_core_stats))


def vcpu_arch(name):
    def h(v, arg):
        return getattr(v.arch, name)(arg)
    h.__name__ = name
    return h


_VCPU_IOCTLS = {U.KVM_GET_STATS_FD: vcpu_get_stats_fd}
for _name, _req in [("get_regs", U.KVM_GET_REGS), ("set_regs", U.KVM_SET_REGS),
                    ("get_sregs", U.KVM_GET_SREGS), ("set_sregs", U.KVM_SET_SREGS),
                    ("translate", U.KVM_TRANSLATE), ("interrupt", U.KVM_INTERRUPT),
                    ("nmi", U.KVM_NMI), ("get_msrs", U.KVM_GET_MSRS), ("set_msrs", U.KVM_SET_MSRS),
                    ("set_cpuid2", U.KVM_SET_CPUID2), ("get_cpuid2", U.KVM_GET_CPUID2),
                    ("get_mp_state", U.KVM_GET_MP_STATE), ("set_mp_state", U.KVM_SET_MP_STATE),
                    ("set_guest_debug", U.KVM_SET_GUEST_DEBUG), ("get_fpu", U.KVM_GET_FPU),
                    ("get_lapic", U.KVM_GET_LAPIC), ("set_lapic", U.KVM_SET_LAPIC),
                    ("get_vcpu_events", U.KVM_GET_VCPU_EVENTS),
                    ("set_vcpu_events", U.KVM_SET_VCPU_EVENTS),
                    ("get_debugregs", U.KVM_GET_DEBUGREGS),
                    ("set_debugregs", U.KVM_SET_DEBUGREGS),
                    ("set_fpu", U.KVM_SET_FPU),
                    ("set_signal_mask", U.KVM_SET_SIGNAL_MASK)]:
    _VCPU_IOCTLS[_req] = vcpu_arch(_name)
