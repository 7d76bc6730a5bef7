"""A disassembly stepper: single-step the guest (KVM_SET_GUEST_DEBUG with SINGLESTEP),
continue to breakpoints on addresses or on labels of the loaded program (hardware
breakpoints in DR0-DR3), or until an exit of a chosen reason.

>>> from kvmlab.vmm import Machine
>>> m = Machine.from_file("guests/hello64.S", backend="auto")
>>> st = Stepper(m)
>>> hex(st.add_breakpoint("puts"))
'0x1011'
>>> st.cont()
'breakpoint 0x1011 <puts>'
>>> st.step()
'single step'
>>> print(st.text().splitlines()[0])
stepper vCPU 0: rip 0x1012 <puts+0x1>, stopped: single step
>>> m.close()
"""
from __future__ import annotations

from ..uapi import ExitReason
from . import _insn, html
from ._base import View, resolve, vcpu_idle


class _Break(Exception):
    def __init__(self, reason):
        self.reason = reason


class Stepper(View):
    """Step, continue and breakpoints for one vCPU of a Machine.  ``Stepper(machine,
    vcpu=0, window=8)``: ``window`` instructions are shown around rip."""

    uses_vcpu = True

    def __init__(self, machine, vcpu: int = 0, window: int = 8):
        m, _, v = resolve(machine, vcpu)
        if m is None:
            raise TypeError("Stepper needs a Machine (it runs the Machine's exit loop)")
        super().__init__(m, vcpu)
        self.vcpu = v
        self.window = window
        self.breakpoints: dict[int, str] = {}
        self.break_on: set[str] = set()
        self.last_stop = "not started"
        self.steps = 0
        self.rip = 0
        self.linear = 0
        self._sregs = None
        self.capture()

    # -------------------------------------------------------------- breakpoints
    def _linear(self, addr: int) -> int:
        s = self._sregs
        return addr + (s.cs.base if s is not None and _insn.cpu_bits(s) != 64 else 0)

    def add_breakpoint(self, where) -> int:
        """Break before the instruction at ``where``: an address (rip value) or a label of
        the loaded program.  Returns the linear address."""
        prog = self.machine.program
        if isinstance(where, str):
            if prog is None or where not in prog.symbols:
                known = ", ".join(sorted(prog.symbols)) if prog else "no program loaded"
                raise KeyError(f"no label {where!r} in the loaded program ({known})")
            addr, name = prog.symbols[where], where
        else:
            addr, name = int(where), _insn.symbolize(prog, int(where)) or ""
        lin = self._linear(addr)
        self.breakpoints[lin] = name
        self.show()
        return lin

    def remove_breakpoint(self, where) -> None:
        prog = self.machine.program
        addr = prog.symbols[where] if isinstance(where, str) else int(where)
        self.breakpoints.pop(self._linear(addr), None)
        self.show()

    def break_on_exit(self, *reasons: str) -> None:
        """Also stop at exits of these reasons (``"IO"``, ``"MMIO"``, ``"HLT"`` ...)."""
        for r in reasons:
            if r.upper() not in ExitReason.__members__:
                raise ValueError(f"unknown exit reason {r!r}: use e.g. IO, MMIO, HLT")
            self.break_on.add(r.upper())
        self.show()

    # -------------------------------------------------------------- running
    def _run(self, debug: dict, **run_kw) -> str:
        if self.running():
            raise RuntimeError(f"vCPU {self.vcpu_index} is running in the background: stop that run "
                               f"(handle.stop()) before stepping")
        v = self.vcpu
        v.set_guest_debug(True, **debug)

        def check(ex, action):
            name = action.record["reason"]
            if name in self.break_on and not action.stop:
                raise _Break(f"exit {name}")
        try:
            result = self.machine.run(trace=check if self.break_on else None, **run_kw)
            why = result.stop_reason
        except _Break as b:
            v.immediate_exit = 1      # complete the exit's instruction without running further
            try:
                v.run()
            finally:
                v.immediate_exit = 0
            why = b.reason
        finally:
            v.set_guest_debug(False)
        self.capture()
        return why

    def step(self, n: int = 1) -> str:
        """Execute ``n`` instructions (one KVM_RUN each, with SINGLESTEP); returns why it stopped."""
        why = "not run"
        for _ in range(n):
            why = self._run({"singlestep": True}, max_exits=1, timeout=10.0)
            self.steps += 1
            if why == "debug" or why == "max_exits":
                why = "single step"
            else:
                break
        self.last_stop = why
        self.show()
        return why

    def cont(self, max_exits: int = 100_000, timeout: float | None = 10.0) -> str:
        """Run until a breakpoint, an exit in ``break_on``, or the guest stops."""
        if self.linear in self.breakpoints:
            first = self.step()                        # step off the breakpoint first
            if first != "single step" or self.linear in self.breakpoints:
                return self._stopped(first)
        bps = sorted(self.breakpoints)
        if len(bps) <= 4:
            regs = [0] * 8
            dr7 = 0x400
            for i, a in enumerate(bps):
                regs[i] = a
                dr7 |= 1 << (2 * i)                   # L<i>, RW=00 (execute), LEN=00
            regs[7] = dr7
            why = self._run({"hw_bp": bool(bps), "debugreg": regs}, max_exits=max_exits, timeout=timeout)
        else:                                           # more than 4: single-step and compare
            why = "max_exits"
            for _ in range(max_exits):
                why = self._run({"singlestep": True}, max_exits=1, timeout=timeout)
                if why not in ("debug", "max_exits") or self.linear in self.breakpoints:
                    break
        if why in ("debug", "max_exits") and self.linear in self.breakpoints:
            name = self.breakpoints[self.linear]
            why = f"breakpoint {self.linear:#x}" + (f" <{name}>" if name else "")
        return self._stopped(why)

    def _stopped(self, why: str) -> str:
        self.last_stop = why
        self.show()
        return why

    # -------------------------------------------------------------- state and text
    def capture(self) -> None:
        if not vcpu_idle(self.vcpu):
            return
        self._sregs = self.vcpu.get_sregs()
        self.rip = int(self.vcpu.get_regs().rip)
        self.linear = self._linear(self.rip)

    def listing(self) -> list:
        """Instructions around rip: from the program if rip is inside it, else from memory."""
        prog = self.machine.program
        if prog is not None and prog.base <= self.rip < prog.end:
            insns = prog.disassemble()
            idx = next((i for i, x in enumerate(insns) if x.address == self.rip), None)
            if idx is not None:
                lo = max(0, idx - self.window // 3)
                return insns[lo:lo + self.window]
        if self._sregs is None:
            return []
        from .. import asm
        code = _insn.read_linear(self.machine.vm, self._sregs, self.linear, 15 * self.window)
        return asm.disassemble(code, self.rip, _insn.cpu_bits(self._sregs), self.window)

    def text(self) -> str:
        prog = self.machine.program
        sym = _insn.symbolize(prog, self.rip)
        out = [f"stepper vCPU {self.vcpu_index}: rip {self.rip:#x}" + (f" <{sym}>" if sym else "")
               + f", stopped: {self.last_stop}"]
        if self.breakpoints:
            out.append("breakpoints: " + ", ".join(f"{a:#x}" + (f" <{n}>" if n else "")
                                                   for a, n in sorted(self.breakpoints.items())))
        if self.break_on:
            out.append("break on exits: " + ", ".join(sorted(self.break_on)))
        for insn in self.listing():
            mark = "=>" if insn.address == self.rip else (" *" if self._linear(insn.address) in self.breakpoints else "  ")
            s = _insn.symbolize(prog, insn.address)
            label = f" <{s}>" if s and "+" not in s else ""
            out.append(f"{mark} {insn.address:#x}{label}: {insn.mnemonic} {insn.op_str}".rstrip())
        return "\n".join(out)

    # -------------------------------------------------------------- widget
    def _build(self):
        import ipywidgets as W
        self._out = W.HTML()
        step = W.Button(description="Step")
        cont = W.Button(description="Continue")
        where = W.Text(placeholder="label or 0xaddress", layout=W.Layout(width="14em"))
        add = W.Button(description="Breakpoint")
        reasons = W.SelectMultiple(options=["IO", "MMIO", "HLT", "DEBUG", "SHUTDOWN", "INTERNAL_ERROR"],
                                   rows=3, description="break on")
        step.on_click(lambda _b: self.step())
        cont.on_click(lambda _b: self.cont())

        def on_add(_b):
            w = where.value.strip()
            self.add_breakpoint(int(w, 0) if w[:1].isdigit() else w)
            where.value = ""
        add.on_click(on_add)

        def on_reasons(change):
            self.break_on = set(change["new"])
            self.show()
        reasons.observe(on_reasons, "value")
        return W.VBox([W.HBox([step, cont, where, add]), reasons, self._out])

    def _update(self) -> None:
        self._out.value = html.pre(self.text())
