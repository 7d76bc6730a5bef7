"""include/trace/events/kvm.h + arch/x86/kvm/trace.h: the kernel's KVM tracepoints.

``kvm.trace`` records events such as ``kvm_entry``, ``kvm_exit`` (with the vendor's
hardware exit code), ``kvm_pio``, ``kvm_mmio``, ``kvm_page_fault``, ``kvm_inj_virq``,
``kvm_ioeventfd`` hits and coalesced writes, like ``trace-cmd record -e kvm``.
Off by default; when off the only cost is one attribute test (``if tr.on``) per site.
"""
from __future__ import annotations

import collections
import threading
import time


class TraceEvent:
    __slots__ = ("ts", "vcpu", "name", "fields")

    def __init__(self, ts, vcpu, name, fields):
        self.ts, self.vcpu, self.name, self.fields = ts, vcpu, name, fields

    def __str__(self):
        args = " ".join(f"{k}={_fmt(v)}" for k, v in self.fields.items())
        who = f"vcpu{self.vcpu}" if self.vcpu is not None else "vm"
        return f"{self.ts:12.6f} {who:>7} {self.name}: {args}"

    __repr__ = __str__


def _fmt(v):
    if isinstance(v, int) and not isinstance(v, bool) and v > 9:
        return hex(v)
    return str(v)


class Trace:
    """A bounded ring of trace events (``/sys/kernel/tracing/trace`` for one VM)."""

    def __init__(self, size=100_000):
        self.on = False
        self.events = collections.deque(maxlen=size)
        self._t0 = time.perf_counter()
        self._lock = threading.Lock()

    def enable(self, on=True):
        self.on = bool(on)

    def clear(self):
        with self._lock:
            self.events.clear()

    def emit(self, vcpu, name, **fields):
        vid = getattr(vcpu, "vcpu_id", vcpu)
        ev = TraceEvent(time.perf_counter() - self._t0, vid, name, fields)
        with self._lock:
            self.events.append(ev)

    def __iter__(self):
        with self._lock:
            return iter(list(self.events))

    def __len__(self):
        return len(self.events)

    def __str__(self):
        return "\n".join(str(e) for e in self)
