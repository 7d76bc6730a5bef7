"""``Kvm``: the system fd (``/dev/kvm``), and :func:`open`, which picks the backend.

Modelled on rust-vmm's kvm-ioctls: ``Kvm`` -> ``VmFd`` -> ``VcpuFd``, one method per
ioctl, errors carry the kernel's errno.
"""
from __future__ import annotations

import errno
import os

from . import uapi
from .errors import BackendUnavailable, KvmError
from .vm import VmFd

BACKENDS = ("sim", "hw", "auto")


def _call(backend, fd, name, request, arg=0):
    try:
        return backend.ioctl(fd, request, arg)
    except KvmError:
        raise
    except OSError as e:
        raise KvmError(e.errno, name) from None


def open(backend: str | None = None, *, vendor: str | None = None) -> "Kvm":
    """Open KVM: ``"sim"`` (the simulated kernel, runs anywhere), ``"hw"`` (the real
    ``/dev/kvm``) or ``"auto"`` (hw if /dev/kvm is usable, else sim).  The default comes
    from the environment variable ``KVMLAB_BACKEND``, else ``"sim"``.  ``vendor`` picks
    the simulated ``kvm_x86_ops`` flavour (``"intel"`` VMX or ``"amd"`` SVM).

    >>> kvm = kvmlab.open("auto")
    >>> kvm.api_version
    12
    """
    choice = backend or os.environ.get("KVMLAB_BACKEND") or "sim"
    if choice not in BACKENDS:
        raise ValueError(f"unknown backend {choice!r}: use one of 'sim', 'hw', 'auto'")
    if choice == "auto":
        from .hw import unusable_reason
        choice = "hw" if unusable_reason() is None else "sim"
    if choice == "hw":
        from .hw import HwBackend, kick, unusable_reason
        why = unusable_reason()
        if why:
            raise BackendUnavailable(why)
        if vendor is not None:
            raise ValueError("vendor= chooses a simulated kvm_x86_ops flavour; the hw backend uses the host's KVM module")
        kick.install()
        return Kvm(HwBackend())
    try:
        from .sim import SimBackend
    except ImportError as e:  # pragma: no cover - only while the simulator is being built
        raise BackendUnavailable(f"the simulated backend is not available ({e}); use kvmlab.open('hw') on a machine with /dev/kvm") from None
    return Kvm(SimBackend(vendor=vendor or "intel"))


class Kvm:
    """The KVM system fd (``open("/dev/kvm")``)."""

    def __init__(self, backend):
        self.backend = backend
        self.fd = backend.open_dev()
        ver = self.api_version
        if ver != uapi.KVM_API_VERSION:
            raise BackendUnavailable(f"KVM API version {ver} is not {uapi.KVM_API_VERSION}; this kernel is not supported")
        self._mmap_size = None

    @property
    def backend_name(self) -> str:
        """``"sim"`` or ``"hw"``."""
        return self.backend.name

    def _ioctl(self, name, request, arg=0):
        return _call(self.backend, self.fd, name, request, arg)

    @property
    def api_version(self) -> int:
        """KVM_GET_API_VERSION on the system fd: always 12."""
        return self._ioctl("KVM_GET_API_VERSION", uapi.KVM_GET_API_VERSION)

    def check_extension(self, cap: int) -> int:
        """KVM_CHECK_EXTENSION on the system fd: 0 if ``cap`` is absent, else >0 (a value for some caps).

        >>> kvm = kvmlab.open("auto")
        >>> kvm.check_extension(kvmlab.KVM_CAP_USER_MEMORY)
        1
        """
        return self._ioctl("KVM_CHECK_EXTENSION", uapi.KVM_CHECK_EXTENSION, int(cap))

    @property
    def vcpu_mmap_size(self) -> int:
        """KVM_GET_VCPU_MMAP_SIZE on the system fd: bytes to mmap from a vCPU fd (3 pages on x86)."""
        if self._mmap_size is None:
            self._mmap_size = self._ioctl("KVM_GET_VCPU_MMAP_SIZE", uapi.KVM_GET_VCPU_MMAP_SIZE)
        return self._mmap_size

    def _cpuid(self, name, request):
        n = 64
        while True:
            buf = uapi.kvm_cpuid2_with(n)
            buf.nent = n
            try:
                self._ioctl(name, request, buf)
            except KvmError as e:
                if e.errno == errno.E2BIG and n < 4096:
                    n *= 2
                    continue
                raise
            return [uapi.kvm_cpuid_entry2.from_buffer_copy(buf.entries[i]) for i in range(buf.nent)]

    def get_supported_cpuid(self) -> list:
        """KVM_GET_SUPPORTED_CPUID on the system fd: the CPUID entries KVM can give a guest
        (a list of ``kvm_cpuid_entry2``; pass it to ``VcpuFd.set_cpuid2``)."""
        return self._cpuid("KVM_GET_SUPPORTED_CPUID", uapi.KVM_GET_SUPPORTED_CPUID)

    def get_emulated_cpuid(self) -> list:
        """KVM_GET_EMULATED_CPUID on the system fd."""
        return self._cpuid("KVM_GET_EMULATED_CPUID", uapi.KVM_GET_EMULATED_CPUID)

    def get_msr_index_list(self) -> list[int]:
        """KVM_GET_MSR_INDEX_LIST on the system fd: the MSRs saved/restored by KVM_GET/SET_MSRS."""
        probe = uapi.kvm_msr_list_with(0)
        probe.nmsrs = 0
        try:
            self._ioctl("KVM_GET_MSR_INDEX_LIST", uapi.KVM_GET_MSR_INDEX_LIST, probe)
        except KvmError as e:
            if e.errno != errno.E2BIG:
                raise
        buf = uapi.kvm_msr_list_with(probe.nmsrs)
        buf.nmsrs = probe.nmsrs
        self._ioctl("KVM_GET_MSR_INDEX_LIST", uapi.KVM_GET_MSR_INDEX_LIST, buf)
        return [int(buf.indices[i]) for i in range(buf.nmsrs)]

    def create_vm(self, vm_type: int = 0) -> VmFd:
        """KVM_CREATE_VM on the system fd: a new, empty VM.

        >>> vm = kvmlab.open("auto").create_vm()
        >>> vm.close()
        """
        fd = self._ioctl("KVM_CREATE_VM", uapi.KVM_CREATE_VM, vm_type)
        return VmFd(self, fd)

    def close(self) -> None:
        """close() the system fd (VMs stay alive while their own fds are open)."""
        if self.fd is not None:
            self.backend.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"<Kvm backend={self.backend.name!r}>"
