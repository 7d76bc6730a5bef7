"""What every view shares: a deterministic text form, a lazily built ipywidget, and a
live mode that refreshes it (at most 30 times a second) while a vCPU runs in a
background thread (:meth:`kvmlab.vmm.Machine.start`).

A view keeps its *state* (plain Python values read from library objects) apart from its
*widget*.  ``capture()`` reads vCPU state (ioctls: called only when the vCPU is not inside
KVM_RUN, i.e. between exits in the run thread, or when idle); ``poll()`` reads what is
safe to read any time (guest RAM, the console, the ring page) and says whether it
changed; ``text()`` formats the state; ``_update()`` pushes it into the widget.
"""
from __future__ import annotations

import re
import threading
import time

from ..vmm import background

IDLE_HZ = 5          # how often a live view looks for changes while no background run is going on
HOST_ADDRESS = re.compile(r"0x0*7f[0-9a-f]{10}\b", re.I)


class Throttle:
    """At most ``hz`` events per second: ``ready()`` is True if the last True was at least
    ``1/hz`` seconds ago.

    >>> t = Throttle(hz=30, clock=iter([0.0, 0.01, 0.04, 0.05]).__next__)
    >>> [t.ready() for _ in range(4)]
    [True, False, True, False]
    """

    def __init__(self, hz: float = 30, clock=time.monotonic):
        if hz <= 0:
            raise ValueError("hz must be positive")
        self.interval = 1.0 / hz
        self.clock = clock
        self.last: float | None = None

    def ready(self, now: float | None = None) -> bool:
        now = self.clock() if now is None else now
        if self.last is None or now - self.last >= self.interval:
            self.last = now
            return True
        return False


def scrub(text: str) -> str:
    """Replace anything that looks like a host user-space address (0x7f...) by ``<host>``."""
    return HOST_ADDRESS.sub("<host>", text)


class View:
    """Base class of the kvmlab views.  ``str(view)`` is the text form."""

    max_hz = 30
    #: how often a matplotlib image is re-rendered while the vCPU runs
    plot_hz = 4
    #: True if the view reads vCPU state (it then captures between exits in the run thread)
    uses_vcpu = False

    def __init__(self, machine=None, vcpu: int = 0):
        self.machine = machine
        self.vcpu_index = vcpu
        self._widget = None
        self._live: Live | None = None
        self._lock = threading.RLock()      # the live thread and button callbacks both redraw

    # -------------------------------------------------------------- for subclasses
    def capture(self) -> None:
        """Read vCPU state (ioctls).  Never called while the vCPU is inside KVM_RUN."""

    def poll(self) -> bool:
        """Read what may be read any time; return True if the view should redraw."""
        return False

    def text(self) -> str:
        raise NotImplementedError

    def signature(self):
        """A value that changes when the text form would (the live refresher compares it
        after an idle capture); views with a costly text form return something cheaper."""
        return self.text()

    def _build(self):
        import ipywidgets as W
        return W.HTML()

    def _update(self) -> None:
        from .html import pre
        self._widget.value = pre(self.text())

    def running(self) -> bool:
        """True while a background run of this view's machine is in progress."""
        h = background.current(self.machine, self.vcpu_index) if self.machine is not None else None
        return h is not None and h.running

    def plot_due(self) -> bool:
        """Whether to re-render a matplotlib image now: always when idle, at most
        ``plot_hz`` times a second while the vCPU runs (rendering costs tens of ms)."""
        if not self.running():
            return True
        t = self.__dict__.setdefault("_plot_throttle", Throttle(self.plot_hz))
        return t.ready()

    # -------------------------------------------------------------- public
    def refresh(self) -> "View":
        """Read everything again now (call it when the vCPU is not running) and redraw."""
        self.capture()
        self.poll()
        self.show()
        return self

    def show(self) -> None:
        """Redraw the widget from the current state (if it was built)."""
        with self._lock:
            if self._widget is not None:
                self._update()

    @property
    def widget(self):
        """The ipywidgets view (built on first use)."""
        with self._lock:
            if self._widget is None:
                self._widget = self._build()
                self._update()
            return self._widget

    def live(self, machine=None, hz: float | None = None) -> "View":
        """Keep this view moving while ``machine`` (default: the one given to the
        constructor) runs in the background; returns the view, so ``w.live()`` as the last
        line of a cell displays it.  Start the run in another cell: ``machine.start()``."""
        machine = machine if machine is not None else self.machine
        if machine is None:
            raise ValueError("live() needs a Machine: view.live(machine), then machine.start()")
        self.stop_live()
        self._live = Live(self, machine, hz=min(hz or self.max_hz, self.max_hz)).start()
        return self

    def stop_live(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def __str__(self) -> str:
        return self.text()

    def __repr__(self) -> str:
        return self.text()

    def _repr_mimebundle_(self, include=None, exclude=None):
        data = {"text/plain": self.text()}
        w = self.widget
        if getattr(w, "_view_name", None) is not None:
            data["application/vnd.jupyter.widget-view+json"] = {
                "version_major": 2, "version_minor": 0, "model_id": w.model_id}
        return data


class Live:
    """The refresher of one view: a daemon thread that calls :meth:`step` ``hz`` times a
    second.  It attaches to each background run of the machine (a listener captures vCPU
    state between exits, throttled) and redraws the view when something changed."""

    def __init__(self, view: View, machine, hz: float = 30, clock=time.monotonic, sleep=time.sleep):
        self.view = view
        self.machine = machine
        self.hz = hz
        self.clock = clock
        self.sleep = sleep
        self.draw_throttle = Throttle(hz, clock)
        self.capture_throttle = Throttle(hz, clock)
        self.idle_throttle = Throttle(2, clock)
        self.handle = None
        self.dirty = True
        self.draws = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="kvmlab-live", daemon=True)

    def start(self) -> "Live":
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self.thread.is_alive() and threading.current_thread() is not self.thread:
            self.thread.join(1.0)

    def _listener(self, record) -> None:
        # runs in the vCPU thread, between two KVM_RUNs: vCPU ioctls are safe here
        if self.view.uses_vcpu and (record is None or self.capture_throttle.ready()):
            self.view.capture()
        self.dirty = True

    def step(self, now: float | None = None) -> bool:
        """One tick: follow the machine's current run, poll, redraw if needed (throttled).
        Returns True if it redrew."""
        h = background.current(self.machine, self.view.vcpu_index)
        if h is not self.handle:
            if self.handle is not None and self._listener in self.handle.listeners:
                self.handle.listeners.remove(self._listener)
            self.handle = h
            if h is not None:
                h.listeners.append(self._listener)
                if h.done:
                    self._listener(None)
                self.dirty = True
        if self.view.poll():
            self.dirty = True
        if self.view.uses_vcpu and (h is None or h.done) and self.idle_throttle.ready(now):
            before = self.view.signature()     # e.g. after a machine.run() in another cell
            self.view.capture()
            self.dirty = self.dirty or self.view.signature() != before
        if self.dirty and self.draw_throttle.ready(now):
            self.dirty = False
            self.view.show()
            self.draws += 1
            return True
        return False

    def _loop(self) -> None:
        while not self._stop.is_set():
            if getattr(self.machine, "_closed", False):
                return                      # the Machine was closed: nothing will change
            try:
                self.step()
            except Exception:   # noqa: BLE001 - a view must never take the kernel down
                pass
            running = self.handle is not None and self.handle.running
            self.sleep(1.0 / (self.hz if running else min(self.hz, IDLE_HZ)))


def resolve(obj, vcpu: int = 0):
    """``(machine, vm, vcpu)`` from a Machine, a VmFd or a VcpuFd (None where unknown)."""
    if hasattr(obj, "buses") and hasattr(obj, "vm"):
        vcpus = obj.vcpus
        return obj, obj.vm, vcpus[vcpu] if vcpu < len(vcpus) else None
    if hasattr(obj, "get_regs"):
        return None, obj.vm, obj
    if hasattr(obj, "slots") and hasattr(obj, "vcpus"):
        return None, obj, obj.vcpus.get(vcpu)
    raise TypeError(f"expected a Machine, a VmFd or a VcpuFd, got {type(obj).__name__}")


def vcpu_idle(vcpu) -> bool:
    """True unless ``vcpu`` is inside KVM_RUN right now (then its ioctls would wait)."""
    return vcpu is not None and vcpu.fd is not None and getattr(vcpu, "_thread", None) is None
