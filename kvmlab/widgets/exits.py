"""The exit monitor: live counts by exit reason (like ``kvm_stat``), a per-vCPU timeline
coloured by reason, and one selected exit in detail (its kvm_run fields, the guest
instruction behind it, and on the simulated backend the hardware exit code and the
kernel's trace events around it).

>>> from kvmlab import asm
>>> from kvmlab.vmm import Machine
>>> m = Machine(mode="real", backend="auto")
>>> m.load(asm.assemble(".code16\\n_start: mov al, 'k'\\n out 0xe9, al\\n hlt", base=0x1000))
>>> mon = ExitMonitor(m)
>>> _ = m.run(trace=mon.trace)        # or: mon.live(); m.start()  (display and run in two cells)
>>> print(mon.counts_text())
exits: 2
  HLT      1
  IO       1
>>> print(mon.detail(0).splitlines()[2])
  instruction: 0x1002: out 0xe9, al ... <_start+0x2>
>>> m.close()
"""
from __future__ import annotations

from collections import Counter

from ..vmm import background
from . import _insn, html
from ._base import View, resolve, vcpu_idle

COLORS = {"IO": "#1f77b4", "MMIO": "#ff7f0e", "HLT": "#2ca02c", "DEBUG": "#9467bd", "INTR": "#8c564b",
          "SHUTDOWN": "#d62728", "INTERNAL_ERROR": "#e377c2", "FAIL_ENTRY": "#7f7f7f",
          "IRQ_WINDOW_OPEN": "#bcbd22", "SYSTEM_EVENT": "#17becf"}
_META = ("index", "vcpu", "rip", "hardware_exit_code", "reason")
_DECODE = {"direction": {0: "IN", 1: "OUT"}, "is_write": {False: "read", True: "write", 0: "read", 1: "write"}}


def field_text(rec: dict) -> str:
    """The exit's kvm_run fields as ``name=value`` (numbers in hex where KVM means an address)."""
    out = []
    for k, v in rec.items():
        if k in _META:
            continue
        if k in _DECODE and v in _DECODE[k]:
            out.append(f"{k}={v} ({_DECODE[k][v]})")
        elif isinstance(v, int) and not isinstance(v, bool) and k in ("port", "phys_addr", "pc", "dr6", "dr7",
                                                                       "hardware_exit_reason"):
            out.append(f"{k}={v:#x}")
        else:
            out.append(f"{k}={v}")
    return " ".join(out)


class ExitMonitor(View):
    """Exits of a Machine's runs.  ``ExitMonitor(machine, selected=None, kernel_trace=False)``:
    ``kernel_trace`` turns on the simulated kernel's tracepoints (sim only) so a selected
    exit also lists the kernel events that led to it.

    Records come from background runs (``machine.start()``, followed live), from
    ``machine.run(trace=monitor.trace)`` (traced runs add up), or from ``monitor.load(result)``;
    the newest source of each vCPU is shown."""

    uses_vcpu = True

    def __init__(self, machine, selected: int | None = None, kernel_trace: bool = False):
        m, vm, _ = resolve(machine)
        if m is None:
            raise TypeError("ExitMonitor needs a Machine (it follows the Machine's exit loop)")
        super().__init__(m)
        self.vm = vm
        if kernel_trace:
            trace = self._kernel_trace()
            if trace is not None:
                trace.enable()
        self.loaded: dict[int, list] = {}
        self.selected = selected
        self.selected_vcpu = 0
        self._sregs: dict = {}
        self._counted: dict = {}
        self._over: dict = {}           # vCPU -> the background run that loaded records replaced
        self._seen = -1
        self.capture()

    # -------------------------------------------------------------- sources
    def trace(self, ex, action) -> None:
        """Pass as ``machine.run(trace=monitor.trace)``: records every exit (with rip)."""
        v = self.machine.vcpus[0]
        rec = {"index": len(self.loaded.setdefault(0, [])), "vcpu": 0, "rip": int(v.get_regs().rip)}
        code = v.hardware_exit_code
        if code is not None:
            rec["hardware_exit_code"] = code
        rec.update(action.record)
        self.loaded[0].append(rec)
        self._over[0] = background.current(self.machine, 0)

    def load(self, result, vcpu: int = 0) -> "ExitMonitor":
        """Show the exits of a finished run (a RunResult or a list of exit records)."""
        exits = getattr(result, "exits", result)
        self.loaded[vcpu] = [dict(r, index=i, vcpu=vcpu) for i, r in enumerate(exits)]
        self._over[vcpu] = background.current(self.machine, vcpu)
        self.show()
        return self

    def _handles(self) -> dict:
        """vCPU -> the background run it shows (unless records were loaded or traced since)."""
        return {v: h for v, h in background.handles_of(self.machine).items()
                if not (v in self._over and self._over[v] is h)}

    def _lists(self) -> dict[int, list]:
        """vCPU -> its live record list (not copied): the newest source of each vCPU."""
        out = dict(self.loaded)
        for vcpu, h in self._handles().items():
            out[vcpu] = h.exits
        return out

    @property
    def records(self) -> dict[int, list]:
        """vCPU -> a snapshot of its exit records."""
        return {k: list(v) for k, v in self._lists().items()}

    def capture(self) -> None:
        for i, v in enumerate(self.machine.vcpus):
            if vcpu_idle(v):
                self._sregs[i] = v.get_sregs()

    def signature(self):
        regs = tuple((k, s.cr0, s.cr3, s.cs.base) for k, s in sorted(self._sregs.items()))
        return self._seen, self.selected, self.selected_vcpu, regs

    def poll(self) -> bool:
        handles = self._handles()
        n = sum(handles[v].total if v in handles else len(r) for v, r in self._lists().items())
        changed, self._seen = n != self._seen, n
        return changed

    # -------------------------------------------------------------- text
    def counts(self) -> Counter:
        """Exits by reason over all vCPUs (counted incrementally: a long run stays cheap)."""
        total: Counter = Counter()
        handles = self._handles()
        for vcpu, recs in self._lists().items():
            h = handles.get(vcpu)
            if h is not None:                       # a background run counts every exit
                total.update(dict(h.counts))
                continue
            src, n, c = self._counted.get(vcpu, (None, 0, Counter()))
            if src is not recs or n > len(recs):
                src, n, c = recs, 0, Counter()
            end = len(recs)
            c.update(recs[i]["reason"] for i in range(n, end))
            self._counted[vcpu] = (src, end, c)
            total.update(c)
        return total

    def counts_text(self) -> str:
        c = self.counts()
        rows = sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))
        width = max([len(k) for k in c] + [6])
        n, kept = sum(c.values()), sum(len(r) for r in self._lists().values())
        head = f"exits: {n}" + (f" (the first {kept} kept for the timeline)" if kept < n else "")
        return "\n".join([head] + [f"  {k:<{width}} {v:>3}" for k, v in rows])

    def timeline_text(self, limit: int = 12) -> str:
        lines = []
        for vcpu, recs in sorted(self._lists().items()):
            runs: list = []
            for r in recs:
                if runs and runs[-1][0] == r["reason"]:
                    runs[-1][1] += 1
                else:
                    runs.append([r["reason"], 1])
            parts = [f"{k} x{n}" if n > 1 else k for k, n in runs[:limit]]
            more = f" ... (+{len(runs) - limit} runs)" if len(runs) > limit else ""
            lines.append(f"vCPU {vcpu}: " + (", ".join(parts) + more if parts else "(no exits)"))
        return "\n".join(lines) or "(no exits yet)"

    def detail(self, index: int, vcpu: int = 0) -> str:
        """The exit ``index`` of ``vcpu`` in detail."""
        recs = self._lists().get(vcpu, [])
        if not 0 <= index < len(recs):
            return f"exit #{index} of vCPU {vcpu}: none (vCPU {vcpu} has {len(recs)} exits)"
        r = recs[index]
        lines = [f"exit #{index} on vCPU {vcpu}: {r['reason']}",
                 f"  kvm_run: {field_text(r) or '(no fields for this reason)'}"]
        rip = r.get("rip")
        if rip is None:
            lines.append("  instruction: unknown (no rip recorded: use machine.start() or run(trace=monitor.trace))")
        elif vcpu not in self._sregs:
            lines.append(f"  rip {rip:#x} (guest state not readable while the vCPU runs)")
        else:
            insn, where = _insn.cause(self.vm, self._sregs[vcpu], rip, r["reason"])
            text = str(insn) if insn is not None else "(cannot read guest memory there)"
            lines.append(f"  instruction: {text}" + (f"  (KVM reported rip {rip:#x}, already past it)"
                                                     if where == "before rip" else ""))
            sym = self._symbol(insn.address if insn is not None else rip)
            if sym:
                lines[-1] += f"  <{sym}>"
        code = r.get("hardware_exit_code")
        lines.append(f"  hardware exit code: {code:#x}" if code is not None
                     else "  hardware exit code: simulated backend only")
        events = self.kernel_events(index, vcpu)
        if events is not None:
            lines += ["  kernel events:"] + [f"    {e}" for e in events]
        return "\n".join(lines)

    def _symbol(self, addr: int) -> str | None:
        return _insn.symbolize(getattr(self.machine, "program", None), addr)

    def _kernel_trace(self):
        try:
            return getattr(self.vm.kernel, "trace", None)
        except (AttributeError, OSError, ImportError):
            return None       # hw: the kernel's tracepoints are not ours to read

    def kernel_events(self, index: int, vcpu: int = 0) -> list[str] | None:
        """Hook: the simulated kernel's trace events around exit ``index``: from the previous
        ``kvm_exit`` to the next ``kvm_entry`` (which completes this exit), this exit's
        ``kvm_exit`` marked ``>``.  From ``vm.kernel.trace`` when the simulator records one;
        None where there is none (hw)."""
        trace = self._kernel_trace()
        if trace is None:
            return None
        if not getattr(trace, "on", True):
            return ["(the kernel trace is off: ExitMonitor(machine, kernel_trace=True) or "
                    "vm.kernel.trace.enable() before running)"]
        events = [e for e in list(getattr(trace, "events", [])) if getattr(e, "vcpu", None) in (vcpu, None)]
        ends = [i for i, e in enumerate(events) if e.name == "kvm_exit"]
        if index >= len(ends):
            return []
        lo, here = (ends[index - 1] + 1 if index else 0), ends[index]
        hi = next((i for i in range(here + 1, len(events)) if events[i].name == "kvm_entry"), here)
        return [("> " if i == here else "  ") + f"{events[i].name}: " + " ".join(
            f"{k}={v:#x}" if isinstance(v, int) and not isinstance(v, bool) else f"{k}={v}"
            for k, v in events[i].fields.items()) for i in range(lo, hi + 1)]

    def select(self, index: int, vcpu: int = 0) -> "ExitMonitor":
        """Show exit ``index`` of ``vcpu`` in detail (in the text form and the widget)."""
        self.selected, self.selected_vcpu = index, vcpu
        if self._widget is not None:
            self._vcpu_pick.value = vcpu
            self._slider.value = index
        return self

    def text(self) -> str:
        out = [self.counts_text(), self.timeline_text()]
        if self.selected is not None:
            out.append(self.detail(self.selected, self.selected_vcpu))
        return "\n".join(out)

    # -------------------------------------------------------------- widget
    def plot(self):
        """The timeline as a matplotlib Figure: x = exit number, one row per vCPU."""
        fig = html.figure(9, 1.2 + 0.5 * max(1, len(self._lists())))
        ax = fig.add_subplot(1, 1, 1)
        for vcpu, recs in sorted(self._lists().items()):
            recs = recs[-2000:]
            by: dict = {}
            for r in recs:
                by.setdefault(r["reason"], []).append(r["index"])
            for reason, xs in sorted(by.items()):
                ax.scatter(xs, [vcpu] * len(xs), marker="|", s=300, color=COLORS.get(reason, "#333333"),
                           label=reason)
        handles, labels = ax.get_legend_handles_labels()
        uniq = dict(zip(labels, handles))
        if uniq:
            ax.legend(uniq.values(), uniq.keys(), loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
        ax.set_xlabel("exit number")
        from matplotlib.ticker import MaxNLocator
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_yticks(sorted(self._lists()) or [0])
        ax.set_yticklabels([f"vCPU {v}" for v in sorted(self._lists())] or ["vCPU 0"])
        fig.tight_layout()
        return fig

    def _build(self):
        import ipywidgets as W
        self._counts = W.HTML()
        self._image = W.Image(format="png")
        self._slider = W.IntSlider(description="exit #", min=0, max=0, continuous_update=False)
        self._vcpu_pick = W.Dropdown(description="vCPU", options=[0], value=0)
        self._detail = W.HTML()

        def pick(_):
            self._detail.value = html.pre(self.detail(self._slider.value, self._vcpu_pick.value))
        self._slider.observe(pick, "value")
        self._vcpu_pick.observe(pick, "value")
        return W.VBox([self._counts, self._image, W.HBox([self._vcpu_pick, self._slider]), self._detail])

    def _update(self) -> None:
        recs = self._lists()
        self._counts.value = html.pre(self.counts_text())
        if self.plot_due():
            self._image.value = html.png(self.plot())
        vcpus = sorted(recs) or [0]
        if list(self._vcpu_pick.options) != vcpus:
            self._vcpu_pick.options = vcpus
        n = len(recs.get(self._vcpu_pick.value, []))
        follow = self._slider.value == self._slider.max      # at the newest exit: stay there
        self._slider.max = max(n - 1, 0)
        if follow:
            self._slider.value = self._slider.max
        self._detail.value = html.pre(self.detail(self._slider.value, self._vcpu_pick.value)) if n else ""
