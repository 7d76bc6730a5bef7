"""The guest-physical address space: memslots (with READONLY / LOG_DIRTY flags), the holes
between them (where accesses exit as MMIO), the devices the Machine registered on its
buses, and the pages the guest dirtied (KVM_GET_DIRTY_LOG).

>>> import kvmlab
>>> from kvmlab.vmm import Machine
>>> m = Machine(mode="real", memory=0x100000, backend="auto")
>>> rom = m.add_rom(0x100000, 0x1000)
>>> print("\\n".join(str(MemslotMap(m)).splitlines()[:4]))
guest-physical address space: 2 slots, 1 MMIO device
  0x00000000-0x000fffff  slot 0  RAM  1M
  0x00100000-0x00100fff  slot 1  ROM  4K  (KVM_MEM_READONLY: writes exit as MMIO)
  0x00101000-0xcfffffff  hole (accesses exit to userspace as MMIO)
>>> m.close()
"""
from __future__ import annotations

from ..uapi import KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY
from ..vmm.pagewalk import _size
from . import html
from ._base import View, resolve

TOP = 1 << 32     # the map shows at least the first 4 GiB
COLORS = {"RAM": "#4c9be8", "ROM": "#8fd16a", "hole": "#eeeeee", "device": "#f5a142"}


class MemslotMap(View):
    """Memslots, holes and devices of a VM.  ``MemslotMap(machine_or_vm, read_dirty_log=True)``.

    Slots with KVM_MEM_LOG_DIRTY_PAGES have their dirty log read on every refresh; reading
    clears KVM's log, so ``dirty`` accumulates what this view has seen (per slot: page
    indices) and ``last_dirty`` holds the pages of the last read.  A lesson that calls
    ``vm.get_dirty_log`` itself passes ``read_dirty_log=False``."""

    max_hz = 10

    def __init__(self, obj, read_dirty_log: bool = True):
        machine, vm, _ = resolve(obj)
        super().__init__(machine)
        self.vm = vm
        self.read_dirty_log = read_dirty_log
        self.dirty: dict[int, set] = {}
        self.last_dirty: dict[int, list] = {}
        self._key = None
        self.poll()

    # -------------------------------------------------------------- state
    def regions(self) -> list[tuple[int, int, str, str]]:
        """``[(start, end, kind, label)]`` in address order; kind: RAM, ROM, hole, device."""
        items = []
        for s in sorted(self.vm.slots.values(), key=lambda s: s.guest_phys_addr):
            kind = "ROM" if s.flags & KVM_MEM_READONLY else "RAM"
            items.append((s.guest_phys_addr, s.end, kind, f"slot {s.slot}"))
        devices = []
        if self.machine is not None:
            for mp in self.machine.buses.mmio.mappings:
                devices.append((mp.base, mp.end, "device", getattr(mp.device, "name", "device")))
        out, pos = [], 0
        top = max([TOP] + [e for _, e, _, _ in items + devices])
        for start, end, kind, label in sorted(items + devices):
            if start > pos:
                out.append((pos, start, "hole", ""))
            out.append((start, end, kind, label))
            pos = max(pos, end)
        if pos < top:
            out.append((pos, top, "hole", ""))
        return out

    def poll(self) -> bool:
        for s in list(self.vm.slots.values()):
            if s.flags & KVM_MEM_LOG_DIRTY_PAGES and self.read_dirty_log:
                pages = self.vm.get_dirty_log(s.slot).pages
                self.last_dirty[s.slot] = pages
                self.dirty.setdefault(s.slot, set()).update(pages)
        key = (tuple((s.slot, s.guest_phys_addr, s.memory_size, s.flags) for s in self.vm.slots.values()),
               tuple(sorted((k, len(v)) for k, v in self.dirty.items())), tuple(map(len, self.last_dirty.values())))
        changed, self._key = key != self._key, key
        return changed

    # -------------------------------------------------------------- text
    def lines(self) -> list[str]:
        nslots = len(self.vm.slots)
        ndev = sum(1 for r in self.regions() if r[2] == "device")
        out = [f"guest-physical address space: {nslots} slot{'s' if nslots != 1 else ''}, "
               f"{ndev} MMIO device{'s' if ndev != 1 else ''}"]
        for start, end, kind, label in self.regions():
            span = f"  {start:#010x}-{end - 1:#010x}  "
            if kind == "hole":
                out.append(span + "hole (accesses exit to userspace as MMIO)")
            elif kind == "device":
                out.append(span + f"MMIO device {label!r} (in a hole: the VMM's bus handles its exits)")
            else:
                s = self.vm.slots[int(label.split()[1])]
                notes = []
                if s.flags & KVM_MEM_READONLY:
                    notes.append("KVM_MEM_READONLY: writes exit as MMIO")
                if s.flags & KVM_MEM_LOG_DIRTY_PAGES:
                    notes.append("KVM_MEM_LOG_DIRTY_PAGES")
                out.append(span + f"{label}  {kind}  {_size(end - start)}" + (f"  ({'; '.join(notes)})" if notes else ""))
        if self.machine is not None and self.machine.buses.pio.mappings:
            out.append("PIO devices: " + ", ".join(f"{m.base:#x}-{m.end - 1:#x} {getattr(m.device, 'name', '?')}"
                                                   for m in self.machine.buses.pio.mappings))
        for slot in sorted(self.dirty):
            s = self.vm.slots.get(slot)
            npages = s.memory_size // 4096 if s else 0
            pages = sorted(self.dirty[slot])
            shown = ", ".join(f"{p:#x}" for p in pages[:16]) + (" ..." if len(pages) > 16 else "")
            out.append(f"dirty pages of slot {slot} (seen by this view): {len(pages)} of {npages}"
                       + (f": {shown}" if pages else ""))
        return out

    def text(self) -> str:
        return "\n".join(self.lines())

    # -------------------------------------------------------------- widget
    def plot(self):
        """Regions as equal-width boxes (sizes differ by orders of magnitude); under each
        dirty-logged slot, its pages as a strip (dark red: dirtied since the last read)."""
        regions = self.regions()
        fig = html.figure(9, 1.8)
        ax = fig.add_subplot(1, 1, 1)
        for i, (start, end, kind, label) in enumerate(regions):
            ax.barh(1, 1, left=i, color=COLORS[kind], edgecolor="#333333")
            ax.text(i + 0.5, 1, f"{label or kind}\n{start:#x}\n{_approx(end - start)}", ha="center",
                    va="center", fontsize=7)
            if kind in ("RAM", "ROM") and int(label.split()[1]) in self.dirty:
                slot = int(label.split()[1])
                n = max(1, (end - start) // 4096)
                ax.barh(0.3, 1, left=i, height=0.3, color="#f7f7f7", edgecolor="#999999")
                for p in self.dirty[slot]:
                    ax.barh(0.3, 1 / n, left=i + p / n, height=0.3,
                            color="#d62728" if p in self.last_dirty.get(slot, ()) else "#f4a3a3")
                ax.text(i + 0.5, 0.05, "dirty pages", ha="center", va="center", fontsize=6)
        ax.set_xlim(-0.02, len(regions) + 0.02)   # keep the outer box edges inside the image
        ax.set_ylim(-0.1, 1.5)
        ax.axis("off")
        fig.tight_layout()
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


def _approx(n: int) -> str:
    """A size for a label: ``2M``, ``3.2G`` (exact sizes are in the text form)."""
    for unit, size in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= size:
            v = n / size
            return f"{v:.0f}{unit}" if v == int(v) or v >= 100 else f"{v:.1f}{unit}"
    return f"{n}"
