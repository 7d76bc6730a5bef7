"""Running a Machine in a background thread, so a notebook cell returns at once.

Jupyter processes widget messages only between cells, so a live view needs the vCPU to run
in another thread: display the view in one cell, start the run in the next.

>>> from kvmlab import asm
>>> from kvmlab.vmm import Machine
>>> m = Machine(mode="real", backend="auto")
>>> m.load(asm.assemble(".code16\\n_start: mov al, 'k'\\n out 0xe9, al\\n hlt", base=0x1000))
>>> h = m.start()                     # returns at once; the guest runs in a thread
>>> h.wait().stop_reason, [e["reason"] for e in h.exits]
('hlt', ['IO', 'HLT'])
>>> m.close()

While it runs, ``h.exits`` grows (each record also has ``index``, ``vcpu``, ``rip`` and,
on the simulated backend, ``hardware_exit_code``), ``h.running`` is True and
``h.stop()`` kicks the vCPU out of KVM_RUN and ends the run (``stop_reason`` "stopped").
"""
from __future__ import annotations

import threading
import weakref
from collections import Counter

from ..uapi import ExitReason
from .state import regs_dict, sregs_dict

_handles: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_lock = threading.Lock()


class _Stopped(Exception):
    pass


def handles_of(machine) -> dict:
    """``{vcpu index: RunHandle}`` of the runs started on ``machine`` (latest per vCPU)."""
    with _lock:
        return dict(_handles.get(machine, {}))


def current(machine, vcpu: int = 0):
    """The latest :class:`RunHandle` started for ``vcpu`` of ``machine``, or None."""
    return handles_of(machine).get(vcpu)


class RunHandle:
    """One :meth:`Machine.run` in a background thread.  Make it with ``machine.start()``.

    ``exits``: the exit records so far (appended by the run thread; the first
    ``max_records`` are kept, ``counts`` counts every exit by reason); ``result``: the
    RunResult once finished; ``error``: the exception the run raised, if any.
    ``listeners``: callables ``fn(record)`` called in the run thread after each exit (and
    ``fn(None)`` when the run ends).  Interrupting the Jupyter kernel does not reach a
    background run: call ``stop()``.  ``Machine.run``'s ``timeout`` (10 s) applies too:
    pass ``timeout=None`` for a guest that should run until stopped.
    """

    def __init__(self, machine, *, vcpu: int = 0, record_regs: bool = True, trace=None,
                 max_records: int = 200_000, **run_kwargs):
        self.machine = machine
        self.vcpu = vcpu
        self.record_regs = record_regs
        self.max_records = max_records
        self.exits: list[dict] = []
        self.counts: Counter = Counter()
        self.total = 0
        self.result = None
        self.error: BaseException | None = None
        self.listeners: list = []
        self._trace_fn = trace
        self._kwargs = run_kwargs
        self._stop = threading.Event()
        self._done = threading.Event()
        self.thread = threading.Thread(target=self._main, name=f"kvmlab-vcpu{vcpu}", daemon=True)

    # ------------------------------------------------------------------ control
    def start(self) -> "RunHandle":
        with _lock:
            runs = _handles.setdefault(self.machine, {})
            old = runs.get(self.vcpu)
            if old is not None and old.running:
                raise RuntimeError(f"vCPU {self.vcpu} is already running in the background: "
                                   f"call .stop() or .wait() on its handle first")
            runs[self.vcpu] = self
        self.thread.start()
        return self

    @property
    def running(self) -> bool:
        return self.thread.is_alive() and not self._done.is_set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None):
        """Wait for the run to end and return its RunResult (re-raises the run's error).
        Ctrl-C while waiting stops the run.  Returns None if ``timeout`` passed first."""
        try:
            if not self._done.wait(timeout):
                return None
        except KeyboardInterrupt:
            self.stop()
            raise
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.result

    def stop(self, timeout: float | None = 10.0):
        """Kick the vCPU out of KVM_RUN and end the run; returns the RunResult."""
        self._stop.set()
        v = self._vcpu()
        if v is not None and v.fd is not None and self.running:
            v.kick()
        self._done.wait(timeout)
        self.thread.join(timeout)
        if v is not None and v.fd is not None and not self.thread.is_alive():
            v.immediate_exit = 0      # a kick that arrived after the run ended must not leak
        if self.error is not None:
            raise self.error
        return self.result

    # ------------------------------------------------------------------ the run thread
    def _vcpu(self):
        vcpus = getattr(self.machine, "vcpus", [])
        return vcpus[self.vcpu] if self.vcpu < len(vcpus) else None

    def _trace(self, ex, action) -> None:
        rec = {"index": self.total, "vcpu": self.vcpu}
        self.total += 1
        self.counts[action.record["reason"]] += 1
        v = self._vcpu()
        if self.record_regs and v is not None:
            rec["rip"] = int(v.get_regs().rip)
            code = v.hardware_exit_code
            if code is not None:
                rec["hardware_exit_code"] = code
        rec.update(action.record)
        if len(self.exits) < self.max_records:
            self.exits.append(rec)
        if self._trace_fn is not None:
            self._trace_fn(ex, action)
        for fn in list(self.listeners):
            fn(rec)
        if self._stop.is_set() and ex.reason == ExitReason.INTR:
            raise _Stopped

    def _main(self) -> None:
        try:
            self.result = self.machine.run(trace=self._trace, vcpu=self.vcpu, **self._kwargs)
        except _Stopped:
            self.result = self._stopped_result()
        except BaseException as e:  # noqa: BLE001 - handed to wait()/stop()
            self.error = e
        finally:
            self._done.set()
            for fn in list(self.listeners):
                try:
                    fn(None)            # None: the run ended
                except Exception:       # noqa: BLE001 - a view must not break the run
                    pass

    def _stopped_result(self):
        from .machine import RunResult
        m, v = self.machine, self._vcpu()
        counts = dict(self.counts)
        strip = ("index", "vcpu", "rip", "hardware_exit_code")
        return RunResult(backend=m.backend, stop_reason="stopped", status=None, console=m.console.text,
                         exits=[{k: x for k, x in r.items() if k not in strip} for r in self.exits],
                         exit_counts=counts, regs=regs_dict(v.get_regs()), sregs=sregs_dict(v.get_sregs()),
                         memory_sha256=m.memory_sha256(), ioeventfds=m.ioeventfd_counts())

    def __repr__(self) -> str:
        state = "running" if self.running else (self.result.stop_reason if self.result else
                                                 ("error" if self.error else "not started"))
        return f"<RunHandle vcpu={self.vcpu} {state} exits={self.total}>"
