"""kvmlab.uapi: <linux/kvm.h> and <asm/kvm.h> for Python (x86-64).

The leaf of the package (standard library only): ctypes structures with the kernel's
names and byte layout (:mod:`.structs`), ioctl request numbers (:mod:`.ioctl`) and
constants/enums (:mod:`.constants`).

>>> from kvmlab.uapi import KVM_RUN, kvm_run, ExitReason, KVM_EXIT_HLT
>>> hex(KVM_RUN), ExitReason(KVM_EXIT_HLT).name
('0xae80', 'HLT')
"""
from .constants import *  # noqa: F401,F403
from .ioctl import *  # noqa: F401,F403
from .structs import *  # noqa: F401,F403
from . import constants, ioctl, structs  # noqa: F401
