"""The ioctl boundary: what the API layer needs from a KVM "kernel".

Both backends implement this protocol.  The API layer (``Kvm`` -> ``VmFd`` -> ``VcpuFd``)
talks only through it, with the kernel's request numbers and the kernel's struct bytes,
so it never knows whether it talks to ``/dev/kvm`` (``kvmlab.hw``) or to the simulated
kernel (``kvmlab.sim``).

Conventions, the same as the syscalls they stand for:

* ``ioctl(fd, request, arg)``: ``arg`` is an ``int`` passed by value, or a writable
  buffer (a ``bytearray`` or a ctypes structure) that the kernel reads and, for
  ``_IOR``/``_IOWR`` requests, writes back in place.  Returns the ioctl's non-negative
  result.  Failure raises ``OSError`` with the kernel's errno (``EINTR`` included).
* ``mmap(fd, length, offset)``: a writable buffer shared with the kernel (for a vCPU fd:
  page 0 is ``struct kvm_run``, page 1 the PIO data page, page 2 the coalesced ring).
* Pointers inside structs (``userspace_addr``, ``dirty_bitmap``) are host addresses; the
  simulated kernel resolves them through :mod:`kvmlab.hostmem`.
* eventfds (irqfd, ioeventfd) are real ``os.eventfd`` file descriptors in both backends.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Backend(Protocol):
    name: str  # "hw" or "sim"

    def open_dev(self) -> int:
        """open("/dev/kvm", O_RDWR): the system fd."""

    def ioctl(self, fd: int, request: int, arg=0) -> int:
        """ioctl(2) on one of this backend's fds."""

    def mmap(self, fd: int, length: int, offset: int = 0):
        """mmap(2) of a vCPU fd: a writable buffer shared with the kernel."""

    def pread(self, fd: int, length: int, offset: int) -> bytes:
        """pread(2), used on binary stats fds."""

    def close(self, fd: int) -> None:
        """close(2)."""
