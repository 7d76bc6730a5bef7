"""The hardware backend: real ioctls on ``/dev/kvm``.

Only this package touches ``/dev/kvm``.  It speaks the same protocol as the simulated
kernel (:mod:`kvmlab.backend`): request numbers and struct bytes in, results and errno
out.  ioctls go through libc's ``ioctl`` via ctypes (``fcntl.ioctl`` takes only a C
``int`` argument and at most 1024 bytes of immutable buffer); the GIL is released during
the call, so another thread can inject an interrupt while a vCPU sleeps in ``KVM_RUN``.
"""
from __future__ import annotations

import ctypes
import errno
import mmap as _mmap
import os

_libc = ctypes.CDLL(None, use_errno=True)
_ioctl = _libc.ioctl
_ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
_ioctl.restype = ctypes.c_int

DEV = "/dev/kvm"


def unusable_reason(path: str = DEV) -> str | None:
    """None if ``path`` can be opened read-write, else a sentence saying why not."""
    if not os.path.exists(path):
        return f"{path} does not exist (no KVM on this machine: use the simulated backend, kvmlab.open('sim'))"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        return f"{path} cannot be opened ({e.strerror}): add yourself to the 'kvm' group or use kvmlab.open('sim')"
    os.close(fd)
    return None


class HwBackend:
    """``/dev/kvm`` as a :class:`kvmlab.backend.Backend`."""

    name = "hw"

    def __init__(self, path: str = DEV):
        self.path = path

    def open_dev(self) -> int:
        return os.open(self.path, os.O_RDWR | os.O_CLOEXEC)

    def ioctl(self, fd: int, request: int, arg=0) -> int:
        if isinstance(arg, int):
            ptr = arg
        elif isinstance(arg, ctypes.Structure | ctypes.Array | ctypes.Union):
            ptr = ctypes.addressof(arg)
        else:  # bytearray, numpy array, mmap: anything writable with the buffer protocol
            ptr = ctypes.addressof(ctypes.c_char.from_buffer(arg)) if len(arg) else 0
        ret = _ioctl(fd, request, ptr)
        if ret < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        return ret

    def mmap(self, fd: int, length: int, offset: int = 0):
        return _mmap.mmap(fd, length, flags=_mmap.MAP_SHARED,
                          prot=_mmap.PROT_READ | _mmap.PROT_WRITE, offset=offset)

    def pread(self, fd: int, length: int, offset: int) -> bytes:
        return os.pread(fd, length, offset)

    def close(self, fd: int) -> None:
        try:
            os.close(fd)
        except OSError as e:  # closing twice is the caller's bug, but never fatal
            if e.errno != errno.EBADF:
                raise

    def kick(self, thread_ident: int) -> None:
        """Interrupt a thread that sits in KVM_RUN (it returns with EINTR)."""
        import signal
        from . import kick as _kick
        _kick.install()
        signal.pthread_kill(thread_ident, _kick.SIGNAL)
