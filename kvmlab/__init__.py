"""kvmlab: learn the Linux KVM API by doing it.

    >>> import kvmlab
    >>> kvm = kvmlab.open("auto")          # the real /dev/kvm if usable, else the simulator
    >>> vm = kvm.create_vm()
    >>> mem = kvmlab.GuestMemory(0x10000)
    >>> vm.set_user_memory_region(slot=0, guest_phys_addr=0, memory=mem)
    >>> vcpu = vm.create_vcpu(0)

``kvmlab.open()`` (default: the simulated backend, or ``$KVMLAB_BACKEND``) returns a
:class:`Kvm`; ``Kvm.create_vm()`` a :class:`VmFd`; ``VmFd.create_vcpu()`` a :class:`VcpuFd`.
One method per ioctl; errors are :class:`KvmError` with the kernel's errno.
"""
from .uapi import *  # noqa: F401,F403  (KVM_* constants and kernel structs)
from .uapi import ExitReason
from .errors import BackendUnavailable, KvmError
from .memory import GuestMemory
from .exits import Exit, IoExit, MmioExit, DebugExit, InternalErrorExit, FailEntryExit
from .vm import VmFd, MemorySlot, DirtyLog
from .vcpu import VcpuFd, CoalescedRing, CoalescedWrite, Translation
from .kvm import Kvm, open  # noqa: A001

__version__ = "0.1.0"
