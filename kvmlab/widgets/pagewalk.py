"""The page-table walk of one virtual address, level by level: the bit split (4-level, and
how 32-bit and PAE paging would split it), each entry with its flags (P R/W U/S PWT PCD
A D PS G NX), the guest-physical result or the #PF, the second stage (GPA -> memslot +
offset), a cross-check with KVM_TRANSLATE, the whole address-space map, and the TLB (on
the simulated backend: whether the address is cached now, hits and misses, what flushed
it last; a real CPU's TLB cannot be read).  The walking itself is
:mod:`kvmlab.vmm.pagewalk`; it reads guest memory and does not touch the TLB.

>>> from kvmlab.vmm import Machine
>>> m = Machine.from_file("guests/hello64.S", backend="auto")
>>> pw = PageWalk(m, va=0x1234)
>>> print("\\n".join(pw.text().splitlines()[:7]))
page walk of 0x1234
walk 0x1234 (read, supervisor), paging: 4-level, CR3 0x10000
  PML4[47:39]=0x0 | PDPT[38:30]=0x0 | PD[29:21]=0x0 | offset[20:0]=0x1234
  PML4E [  0] @ 0x10000 = 0x0000000000011003  P R/W                  -> table 0x11000
  PDPTE [  0] @ 0x11000 = 0x0000000000012003  P R/W                  -> table 0x12000
  PDE   [  0] @ 0x12000 = 0x0000000000000083  P R/W PS               -> page 0x0 (2M)
  -> GPA 0x1234 (2M page, rwx kernel)
>>> pw.translation_text()
'KVM_TRANSLATE: 0x1234 -> 0x1234 (agrees with the walk)'
>>> m.close()
"""
from __future__ import annotations

from ..vmm import pagewalk as walker
from . import html
from ._base import View, resolve, vcpu_idle

MAP_ROWS = 24
TLB_FLAGS = "W U X D G = writable, user, executable, dirty, global"
# the order of the flush causes in the text (the names of kvmlab.cpu.core's TlbView)
FLUSH_CAUSES = ("MOV to CR3", "CR0.PG/WP/PE change", "CR4 paging bit change", "EFER write", "memslot change")


def tlb_slot(va: int, n: int = 256) -> int:
    """The entry of the simulated CPU's direct-mapped TLB that caches ``va``: linear-address
    bits 19:12 (pages 1 MiB apart share it).

    >>> tlb_slot(0x400000), tlb_slot(0x401abc), tlb_slot(0x500000)
    (0, 1, 0)
    """
    return (va >> 12) % n


def tlb_bits(e) -> str:
    """``W U X D G`` of a TLB entry, ``-`` where the bit is off (``TLB_FLAGS`` says which is which)."""
    return " ".join(c if on else "-" for c, on in (
        ("W", e.writable), ("U", e.user), ("X", not e.nx), ("D", e.dirty), ("G", e.global_)))


def flush_counts(t) -> dict:
    """Full flushes of TLB view ``t`` by cause, in ``FLUSH_CAUSES`` order (INVLPG, which
    drops one page, is ``t.invlpg``)."""
    return {c: int(t.flushes_by_cause.get(c, 0)) for c in FLUSH_CAUSES}


class PageWalk(View):
    """``PageWalk(machine_or_vcpu, va=None, follow=None, access="read", level=None,
    show_map=True, show_tlb=True)``.  ``follow`` is "rip" (the next instruction), "cr2" (the
    last faulting address) or None (the fixed ``va``; default "rip" when no ``va`` is given).
    ``level`` shows only the first levels of the walk (step through it one level at a time).
    ``show_tlb``: the TLB panel (the simulated CPU's TLB, ``vm.kernel.vcpu_tlb``; on hw it
    says why there is none)."""

    uses_vcpu = True

    def __init__(self, obj, va: int | None = None, follow: str | None = None, access: str = "read",
                 level: int | None = None, show_map: bool = True, show_tlb: bool = True):
        machine, vm, v = resolve(obj)
        super().__init__(machine)
        if follow not in (None, "rip", "cr2"):
            raise ValueError("follow must be 'rip', 'cr2' or None")
        self.vm, self.vcpu = vm, v
        self.va = va
        self.follow = follow or ("rip" if va is None else None)
        self.access = access
        self.level = level
        self.show_map = show_map
        self.show_tlb = show_tlb
        self.tlb = None                 # a kvmlab.cpu.core.TlbView (sim), or None
        self.tlb_missing = None         # why there is none (hw)
        self.walk = None
        self.translation = None
        self.map: list = []
        self.capture()

    def capture(self) -> None:
        if not vcpu_idle(self.vcpu):
            return
        s = self.vcpu.get_sregs()
        if self.follow == "rip":
            bits64 = s.cs.l and s.efer & (1 << 10)
            self.va = (0 if bits64 else s.cs.base) + int(self.vcpu.get_regs().rip)
        elif self.follow == "cr2":
            self.va = int(s.cr2)
        cpu = {"gbpages": walker.guest_has_gbpages(self.vcpu), "maxphyaddr": walker.guest_maxphyaddr(self.vcpu)}
        self.walk = walker.walk(self.vm, self.va, cr0=s.cr0, cr3=s.cr3, cr4=s.cr4, efer=s.efer,
                                access=self.access, **cpu)
        self.translation = self.vcpu.translate(self.va)
        self.map = walker.address_space_map(self.vm, cr0=s.cr0, cr3=s.cr3, cr4=s.cr4, efer=s.efer,
                                            **cpu) if self.show_map else []
        if self.show_tlb:
            self.capture_tlb()

    def capture_tlb(self) -> None:
        """Read the vCPU's TLB (simulated backend only; a snapshot)."""
        try:
            kernel = self.vm.kernel
        except (AttributeError, OSError, ImportError):
            self.tlb, self.tlb_missing = None, getattr(self.vm.backend, "name", "this")
            return
        self.tlb, self.tlb_missing = kernel.vcpu_tlb(self.vcpu.id), None

    def goto(self, va: int | None = None, follow: str | None = None, access: str | None = None) -> "PageWalk":
        """Walk another address (or follow "rip" / "cr2"); returns the view."""
        self.follow = follow
        if va is not None:
            self.va = va
        if access is not None:
            self.access = access
        self.capture()
        self.show()
        return self

    # -------------------------------------------------------------- text
    def translation_text(self) -> str:
        t, w = self.translation, self.walk
        if t is None or w is None:
            return "KVM_TRANSLATE: not read yet"
        kvm = f"{t.physical_address:#x}" if t.valid else "not mapped"
        if w.ok and t.valid:
            verdict = "agrees with the walk" if w.gpa == t.physical_address else f"DIFFERS from the walk's {w.gpa:#x}"
        elif not w.ok and not t.valid:
            verdict = "agrees: no translation"
        else:
            verdict = "DIFFERS from the walk" + ("" if w.ok else " (the walk faulted)")
        return f"KVM_TRANSLATE: {self.va:#x} -> {kvm} ({verdict})"

    def splits_text(self) -> list[str]:
        out = ["how each paging mode splits this address:"]
        for mode in ("32-bit", "PAE", "4-level"):
            va = self.va & 0xFFFFFFFF if mode != "4-level" else self.va
            parts = " | ".join(f"{n}[{hi}:{lo}]={v:#x}" for n, hi, lo, v in walker.split(va, mode))
            out.append(f"  {mode:8} {parts}")
        return out

    def walk_lines(self) -> list[str]:
        lines = str(self.walk).splitlines()
        if self.level is None or self.walk.mode == "none":
            return lines
        n = len(self.walk.levels)
        k = max(0, min(self.level, n))
        head, levels, tail = lines[:2], lines[2:2 + n], lines[2 + n:]
        shown = head + levels[:k]
        if k < n:
            shown.append(f"  ... step {k} of {n}: next the {self.walk.levels[k].name}")
        else:
            shown += tail
        return shown

    def tlb_lines(self) -> list[str]:
        """The TLB panel: is ``va`` cached now (and in which entry), hits/misses, flushes."""
        if self.tlb is None:
            if self.tlb_missing is None:
                return ["TLB: not read yet"]
            return [f"TLB: not visible on the {self.tlb_missing!r} backend: a real CPU's TLB cannot be read, "
                    "not even by KVM (kvmlab.open('sim') shows the simulated CPU's)"]
        t = self.tlb
        n = 256
        slot = tlb_slot(self.va, n)
        out = [f"TLB of vCPU {self.vcpu.id} (the simulated CPU's: {n} entries, one per 4 KiB page, "
               f"direct-mapped on bits 19:12)"]
        e = t.lookup(self.va)
        if e is not None:
            out.append(f"  {self.va:#x}: HIT in entry {slot}: page {e.linear:#x} -> {e.physical:#x}  "
                       f"{tlb_bits(e)}  ({TLB_FLAGS})")
        else:
            other = next((x for x in t.entries if x.index == slot), None)
            if other is None:
                out.append(f"  {self.va:#x}: MISS (entry {slot} is empty): the next access walks the tables")
            else:
                out.append(f"  {self.va:#x}: MISS: entry {slot} holds page {other.linear:#x} -> "
                           f"{other.physical:#x} (same bits 19:12: the two evict each other)")
        total = t.hits + t.misses
        rate = f" ({100 * t.hits / total:.1f}% hits)" if total else ""
        out.append(f"  {len(t.entries)} of {n} entries valid; lookups: {t.hits} hits, {t.misses} misses{rate}")
        by = flush_counts(t)
        causes = ", ".join(f"{c} {v}" for c, v in by.items() if v) or "none"
        out.append(f"  full flushes: {sum(by.values())} ({causes}); INVLPG (one page): {t.invlpg}")
        if t.last_flush is None:
            out.append("  last flush: none yet")
        elif t.last_flush_rip is None:
            out.append(f"  last flush: {t.last_flush} (at a guest entry, not by a guest instruction)")
        else:
            out.append(f"  last flush: {t.last_flush} by the instruction at rip {t.last_flush_rip:#x}")
        return out

    def walk_part(self) -> list[str]:
        how = {"rip": " (following RIP)", "cr2": " (following CR2, the last page-fault address)"}.get(self.follow, "")
        out = [f"page walk of {self.va:#x}{how}"] + self.walk_lines() + [self.translation_text()]
        if self.walk.mode != "none":
            out += self.splits_text()
        return out

    def map_part(self) -> list[str]:
        if not self.show_map:
            return []
        out = [f"address space ({len(self.map)} mapped ranges):" if self.walk.mode != "none"
               else "address space: paging is off (linear = physical)"]
        out += ["  " + str(r) for r in self.map[:MAP_ROWS]]
        if len(self.map) > MAP_ROWS:
            out.append(f"  ... {len(self.map) - MAP_ROWS} more")
        return out

    def text(self) -> str:
        if self.walk is None:
            return "page walk: the vCPU is running; it is shown at the next exit"
        tlb = self.tlb_lines() if self.show_tlb else []
        return "\n".join(self.walk_part() + tlb + self.map_part())

    # -------------------------------------------------------------- widget
    def _build(self):
        import ipywidgets as W
        self._follow = W.ToggleButtons(options=[("RIP", "rip"), ("CR2", "cr2"), ("address", None)],
                                       value=self.follow)
        self._va = W.Text(value=f"{self.va:#x}" if self.va is not None else "", description="VA",
                          continuous_update=False, layout=W.Layout(width="20em"))
        self._access = W.Dropdown(options=["read", "write", "fetch"], value=self.access, description="access")
        self._level = W.IntSlider(min=0, max=5, value=5 if self.level is None else self.level,
                                  description="levels")
        self._out = W.HTML()

        def changed(_):
            try:
                va = int(self._va.value, 0) if self._follow.value is None and self._va.value else None
            except ValueError:
                return
            n = len(self.walk.levels) if self.walk else 5
            self.level = None if self._level.value >= n else self._level.value
            self.goto(va, self._follow.value, self._access.value)
        for w in (self._follow, self._va, self._access, self._level):
            w.observe(changed, "value")
        return W.VBox([W.HBox([self._follow, self._va, self._access]), self._level, self._out])

    def tlb_html(self) -> str:
        """The TLB panel: its text with the verdict marked, and the 256 entries as a 16 x 16
        grid (blue: a cached page, purple: a global one; the selected address's entry is
        framed, green on a hit, red on a miss; hover an entry for its translation)."""
        lines = self.tlb_lines()
        text = html.esc("\n".join(lines))
        text = text.replace(": HIT ", ": " + html.mark("HIT", "#9be89b") + " ", 1)
        text = text.replace(": MISS", ": " + html.mark("MISS", "#ffb3b3"), 1)
        out = html.pre(text, raw=True)
        if self.tlb is None:
            return out
        by_slot = {e.index: e for e in self.tlb.entries}
        sel = tlb_slot(self.va)
        hit = self.tlb.lookup(self.va) is not None
        cells = []
        for row in range(16):
            tds = [f'<td style="{_HEAD}">{row * 16:02x}</td>']
            for col in range(16):
                i = row * 16 + col
                e = by_slot.get(i)
                color = "#f2f2f2" if e is None else ("#c7a4e6" if e.global_ else "#8ec1e6")
                frame = f"outline: 3px solid {'#2e9e2e' if hit else '#d62728'}; outline-offset: -3px;" \
                    if i == sel else ""
                tip = f"entry {i}: empty" if e is None else \
                    f"entry {i}: {e.linear:#x} -> {e.physical:#x}  {tlb_bits(e)}"
                tds.append(f'<td title="{html.esc(tip)}" style="{_CELL} background: {color}; {frame}"></td>')
            cells.append("<tr>" + "".join(tds) + "</tr>")
        head = "<tr><td></td>" + "".join(f'<td style="{_HEAD}">{c:x}</td>' for c in range(16)) + "</tr>"
        legend = (f'{_swatch("#8ec1e6")} a cached page<br>{_swatch("#c7a4e6")} a cached global page<br>'
                  f'{_swatch("#f2f2f2")} empty<br>framed: entry {sel} = bits 19:12 of {self.va:#x}<br>'
                  f'({"green: a hit" if hit else "red: a miss"})<br>hover an entry for its page')
        grid = (f'<table style="border-collapse: collapse; margin: 2px 0 4px 0">{head}{"".join(cells)}</table>')
        side = "font-family: monospace; font-size: 90%; line-height: 1.6; padding-top: 1.2em"
        return (out + f'<div style="display: flex; gap: 1.2em; align-items: flex-start">{grid}'
                f'<div style="{side}">{legend}</div></div>')

    def _update(self) -> None:
        if self.walk is None:
            self._out.value = html.pre(self.text())
            return
        text = html.esc("\n".join(self.walk_part()))
        for flag in (" A ", " D "):            # the accessed / dirty bits stand out
            text = text.replace(flag, " " + html.mark(flag.strip(), "#9be89b") + " ")
        text = text.replace("fault:", html.mark("fault:", "#ffb3b3"))
        parts = [html.pre(text, raw=True)]
        if self.show_tlb:
            parts.append(f'<div style="margin-top: 0.5em">{self.tlb_html()}</div>')
        if self.show_map:
            parts.append(f'<div style="margin-top: 0.5em">{html.pre(chr(10).join(self.map_part()))}</div>')
        self._out.value = "".join(parts)
        if self._va.value != f"{self.va:#x}":
            self._va.value = f"{self.va:#x}" if self._follow.value is not None else self._va.value


_CELL = "width: 12px; min-width: 12px; height: 12px; padding: 0; border: 1px solid #fff;"
_HEAD = "font: 9px/12px monospace; color: #666; padding: 0 3px 0 0; text-align: right; border: 0"


def _swatch(color: str) -> str:
    return (f'<span style="display: inline-block; width: 10px; height: 10px; background: {color}; '
            f'border: 1px solid #bbb"></span>')
