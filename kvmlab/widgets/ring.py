"""The coalesced MMIO/PIO ring (page 2 of the vCPU mmap): 170 slots, ``first`` (where
userspace consumes) and ``last`` (where KVM writes next), and the entries.

>>> from kvmlab.vmm import Machine
>>> m = Machine.from_file("guests/coalesced.S", backend="auto")
>>> ring = CoalescedRingView(m)
>>> _ = m.run()
>>> print(ring.refresh().text().splitlines()[0])     # the VMM drained it after the last exit
coalesced ring: first=51 last=51 outstanding=0 (170 slots; at most 169 outstanding)
>>> m.close()
"""
from __future__ import annotations

from ..vcpu import RING_MAX
from . import html
from ._base import View, resolve


class CoalescedRingView(View):
    """The ring of a vCPU (one ring per VM, mapped by every vCPU).  ``CoalescedRingView(obj,
    vcpu=0, rows=24)``: ``rows`` limits the entries listed in the text form."""

    def __init__(self, obj, vcpu: int = 0, rows: int = 24):
        machine, _, v = resolve(obj, vcpu)
        super().__init__(machine, vcpu)
        self.vcpu = v
        self.rows = rows
        self.first = self.last = 0
        self.slots: list[tuple] = []
        self.poll()

    def poll(self) -> bool:
        ring = self.vcpu.coalesced_ring
        if ring is None:
            return False
        first, last = ring.first, ring.last
        slots = [(e.phys_addr, e.len, e.pio, bytes(e.data)) for e in map(ring.entry, range(RING_MAX))]
        changed = (first, last, slots) != (self.first, self.last, self.slots)
        self.first, self.last, self.slots = first, last, slots
        return changed

    @property
    def outstanding(self) -> list[int]:
        """Slot indices KVM wrote and userspace has not consumed yet, oldest first."""
        if self.last >= RING_MAX:
            return []
        return [(self.first + k) % RING_MAX for k in range((self.last - self.first) % RING_MAX)]

    @property
    def used(self) -> list[int]:
        """Slots that hold an entry (written at least once since the VM was created)."""
        return [i for i, s in enumerate(self.slots) if s[1]]

    def entry_text(self, i: int) -> str:
        addr, length, pio, data = self.slots[i]
        marks = ("F" if i == self.first else " ") + ("L" if i == self.last else " ")
        state = "outstanding" if i in self.outstanding else "consumed"
        return (f"  [{i:3}] {marks} {'PIO ' if pio else 'MMIO'} {addr:#x} len={length} "
                f"data={data[:length].hex()}  {state}")

    def text(self) -> str:
        out = [f"coalesced ring: first={self.first} last={self.last} outstanding={len(self.outstanding)} "
               f"({RING_MAX} slots; at most {RING_MAX - 1} outstanding)"]
        used = self.used
        out.append(f"slots holding an entry: {len(used)} (F = first, L = last)")
        show = used[-self.rows:]
        if len(used) > len(show):
            out.append(f"  ... {len(used) - len(show)} older slots not shown")
        out += [self.entry_text(i) for i in show]
        return "\n".join(out)

    def plot(self):
        """The 170 slots as a 10 x 17 grid: empty, consumed, outstanding; F and L marked."""
        fig = html.figure(8, 3.2)
        ax = fig.add_subplot(1, 1, 1)
        out = set(self.outstanding)
        for i in range(RING_MAX):
            r, c = divmod(i, 17)
            color = "#f5a142" if i in out else ("#9ecae1" if self.slots and self.slots[i][1] else "#f0f0f0")
            ax.add_patch(_rect(c, -r, color))
            label = ("F" if i == self.first else "") + ("L" if i == self.last else "")
            ax.text(c + 0.5, -r + 0.5, label or str(i), ha="center", va="center",
                    fontsize=8 if label else 6.5, weight="bold" if label else "normal")
        ax.set_xlim(0, 17)
        ax.set_ylim(-9, 1)
        ax.axis("off")
        ax.set_title("coalesced ring: orange outstanding, blue consumed", fontsize=9)
        return fig

    def _build(self):
        import ipywidgets as W
        self._image = W.Image(format="png")
        self._text = W.HTML()
        return W.VBox([self._image, self._text])

    def _update(self) -> None:
        if self.plot_due():
            self._image.value = html.png(self.plot())
        self._text.value = html.pre(self.text())


def _rect(x, y, color):
    from matplotlib.patches import Rectangle
    return Rectangle((x, y), 1, 1, facecolor=color, edgecolor="#888888", linewidth=0.5)
