"""irqfd and ioeventfd wiring with live counters: which guest writes signal which eventfd
inside the kernel (no exit), and which eventfds raise which interrupt line (no ioctl).

>>> from kvmlab.vmm import Machine
>>> m = Machine.from_file("guests/ioeventfd.S", backend="auto")
>>> wiring = Wiring(m)
>>> _ = m.run()
>>> print("\\n".join(wiring.refresh().text().splitlines()[1:4]))
ioeventfds (a matching guest write signals the eventfd inside KVM: no exit):
  mmio:0xd0002000+4  -> eventfd  fired 2
  pio:0x520+2        -> eventfd  fired 3
>>> m.close()
"""
from __future__ import annotations

from . import html
from ._base import View, resolve

#: KVM vCPU statistics that count guest actions (not host timing), shown as deltas
STATS = ("irq_injections", "io_exits", "mmio_exits")


class Wiring(View):
    """The Machine's ioeventfds and irqfds.  ``Wiring(machine, vcpu=0)``; ``raise_irq(gsi)``
    signals an irqfd (as a device model thread would)."""

    max_hz = 10

    def __init__(self, machine, vcpu: int = 0):
        m, _, v = resolve(machine, vcpu)
        if m is None:
            raise TypeError("Wiring needs a Machine (the eventfds belong to the VMM)")
        super().__init__(m, vcpu)
        self.vcpu = v
        self.raised: dict[int, int] = {gsi: 0 for gsi in m.irqfds}
        self.ioevents: dict[str, int] = {}
        self.stats: dict[str, int] = {}
        self._base = self._read_stats() or {}
        self._key = None
        self.poll()

    def _read_stats(self) -> dict | None:
        try:
            s = self.vcpu.stats()
        except Exception:   # noqa: BLE001 - no stats fd on this backend
            return None
        return {k: int(s[k]) for k in STATS if k in s and isinstance(s[k], int)}

    def raise_irq(self, gsi: int) -> None:
        """Signal the irqfd of ``gsi``: the in-kernel irqchip raises that line."""
        self.machine.raise_irq(gsi)
        self.raised[gsi] = self.raised.get(gsi, 0) + 1

    def poll(self) -> bool:
        self.ioevents = self.machine.ioeventfd_counts()
        now = self._read_stats()
        if now is not None:
            self.stats = {k: v - self._base.get(k, 0) for k, v in now.items()}
        key = (tuple(sorted(self.ioevents.items())), tuple(sorted(self.stats.items())),
               tuple(sorted(self.raised.items())))
        changed, self._key = key != self._key, key
        return changed

    def text(self) -> str:
        out = ["irqfd / ioeventfd wiring"]
        out.append("ioeventfds (a matching guest write signals the eventfd inside KVM: no exit):")
        width = max([len(n) for n in self.ioevents] + [4])
        out += [f"  {n:<{width}} -> eventfd  fired {c}" for n, c in sorted(self.ioevents.items())] or ["  (none)"]
        out.append("irqfds (writing the eventfd raises the GSI inside KVM: no ioctl, no exit):")
        out += [f"  eventfd -> GSI {g}  signalled here {self.raised.get(g, 0)}"
                for g in sorted(self.machine.irqfds)] or ["  (none)"]
        if self.stats:
            out.append(f"KVM counters of vCPU {self.vcpu_index} since this view was made: "
                       + ", ".join(f"{k} {v}" for k, v in self.stats.items()))
        return "\n".join(out)

    def _build(self):
        import ipywidgets as W
        self._text = W.HTML()
        buttons = []
        for gsi in sorted(self.machine.irqfds):
            b = W.Button(description=f"raise GSI {gsi}")
            b.on_click(lambda _b, g=gsi: (self.raise_irq(g), self.poll(), self.show()))
            buttons.append(b)
        return W.VBox([self._text, W.HBox(buttons)])

    def _update(self) -> None:
        self._text.value = html.pre(self.text())
