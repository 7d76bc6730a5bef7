"""Reading a binary statistics fd (KVM_GET_STATS_FD), the format of reference §15.

Layout: a 24-byte header, an id string, descriptors of ``16 + name_size`` bytes, then a
data block of u64 values.  The header and descriptors are read once; values are re-read
on every call, as ``kvm_stat`` does.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

_HDR = struct.Struct("<IIIIII")     # flags name_size num_desc id_offset desc_offset data_offset
_DESC = struct.Struct("<IhHII")     # flags exponent size offset bucket_size

TYPES = {0: "cumulative", 1: "instant", 2: "peak", 3: "linear_hist", 4: "log_hist"}
UNITS = {0: "none", 1: "bytes", 2: "seconds", 3: "cycles", 4: "boolean"}


@dataclass(frozen=True)
class StatDesc:
    """One statistics descriptor (``struct kvm_stats_desc``)."""
    name: str
    type: str
    unit: str
    base: int          # 10 or 2
    exponent: int      # value scale = base ** exponent (e.g. -9 with seconds: nanoseconds)
    size: int          # number of u64 values (1, or the histogram's bucket count)
    offset: int        # byte offset in the data block
    bucket_size: int


class StatsFile:
    """A decoded view of a stats fd read through a backend's ``pread``."""

    def __init__(self, backend, fd: int):
        self._backend, self.fd = backend, fd
        hdr = backend.pread(fd, _HDR.size, 0)
        (self.flags, self.name_size, num_desc, id_off, desc_off, self.data_offset) = _HDR.unpack(hdr)
        self.id = backend.pread(fd, self.name_size, id_off).split(b"\0", 1)[0].decode()
        rec = 16 + self.name_size
        raw = backend.pread(fd, rec * num_desc, desc_off)
        descs = []
        for i in range(num_desc):
            flags, exp, size, off, bsz = _DESC.unpack_from(raw, i * rec)
            name = raw[i * rec + 16:(i + 1) * rec].split(b"\0", 1)[0].decode()
            descs.append(StatDesc(name, TYPES.get(flags & 0xF, str(flags & 0xF)),
                                  UNITS.get((flags >> 4) & 0xF, str((flags >> 4) & 0xF)),
                                  2 if (flags >> 8) & 0xF else 10, exp, size, off, bsz))
        self.descriptors = descs
        self._data_size = max((d.offset + 8 * d.size for d in descs), default=0)

    def read(self) -> dict:
        """name -> value (an int, or a list of ints for histograms)."""
        data = self._backend.pread(self.fd, self._data_size, self.data_offset)
        out = {}
        for d in self.descriptors:
            vals = struct.unpack_from(f"<{d.size}Q", data, d.offset)
            out[d.name] = vals[0] if d.size == 1 and not d.type.endswith("hist") else list(vals)
        return out

    def close(self) -> None:
        self._backend.close(self.fd)
