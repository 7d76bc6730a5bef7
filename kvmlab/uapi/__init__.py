"""kvmlab.uapi: <linux/kvm.h> and <asm/kvm.h> for Python (x86-64).

The leaf of the package (standard library only).  Everything is re-exported here:

* :mod:`.structs`   ctypes structures with the kernel's names and byte layout, ``offsetof``
  and the ``*_with(n)`` helpers for variable-length structs;
* :mod:`.run`       struct kvm_run and the members of its exit union;
* :mod:`.ioctl`     _IOC encoding and every request number (system, VM, vCPU fds);
* :mod:`.exits`     KVM_EXIT_* / ExitReason, internal-error suberrors, system events;
* :mod:`.caps`      KVM_CAP_* / Cap;
* :mod:`.constants` flags, limits, mmap page offsets, mp_state, stats encoding.

>>> from kvmlab.uapi import KVM_RUN, kvm_run, ExitReason, KVM_EXIT_HLT
>>> hex(KVM_RUN), ExitReason(KVM_EXIT_HLT).name
('0xae80', 'HLT')
"""
from .caps import *  # noqa: F401,F403
from .constants import *  # noqa: F401,F403
from .exits import *  # noqa: F401,F403
from .ioctl import *  # noqa: F401,F403
from .run import *  # noqa: F401,F403
from .structs import *  # noqa: F401,F403
from . import caps, constants, exits, ioctl, run, structs  # noqa: F401
