"""Guest files: assembly source plus ``# kvmlab:`` header lines that say how to run it.

Header lines are comment lines at the top of the file (before the first statement)::

    # kvmlab: mode=protected load=0x1000
    # kvmlab: memory=512K rom=0x80000+0x1000

==================  ===================================================================
key                 meaning (numbers: C syntax, sizes may end in K/M/G)
==================  ===================================================================
mode                real | protected | long (default: from the first .codeNN, else real)
load                load address of the flat image (default 0x1000); entry is ``_start``
stack               initial rsp (default 0x8000; the stack grows down from there)
memory              RAM size, mapped at guest-physical 0 as slot 0 (default 2M)
rom                 ADDR+SIZE: a KVM_MEM_READONLY slot (outside RAM); it holds the
                    image bytes that fall inside it, zeros elsewhere.  Repeatable.
coalesced           ADDR+SIZE: a coalesced MMIO zone (KVM_REGISTER_COALESCED_MMIO)
coalesced_pio       PORT+SIZE: a coalesced PIO zone
ioeventfd           ADDR+LEN[:DATAMATCH]: an MMIO ioeventfd (LEN 0 = any length)
ioeventfd_pio       PORT+LEN[:DATAMATCH]: a PIO ioeventfd
irqchip             1/yes: create the in-kernel irqchip (PIC, IOAPIC, LAPIC)
irqfd               GSI[@SECONDS]: an irqfd on GSI; the VMM signals it SECONDS
                    (default 0.05) after the run starts (implies irqchip)
gib                 long mode: GiB identity-mapped by the VMM's page tables (default 4)
breakpoint          LABEL or ADDR: a hardware breakpoint there (KVM_SET_GUEST_DEBUG);
                    the run stops with a DEBUG exit before that instruction.  Up to 4.
==================  ===================================================================

>>> h = parse_header('''# kvmlab: mode=protected memory=512K
... # kvmlab: rom=0x80000+0x1000 ioeventfd_pio=0x520+1:0x42
... .code32
... ''')
>>> h.mode, hex(h.memory), [(hex(a), hex(s)) for a, s in h.rom], h.ioeventfd_pio
('protected', '0x80000', [('0x80000', '0x1000')], [(1312, 1, 66)])
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

_HEADER_RE = re.compile(r"^\s*(?:#|//|;)\s*kvmlab\s*:\s*(.*)$", re.I)
_SUFFIX = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}

KEYS = ("mode", "load", "stack", "memory", "rom", "coalesced", "coalesced_pio", "ioeventfd",
        "ioeventfd_pio", "irqchip", "irqfd", "gib", "breakpoint")


class GuestError(ValueError):
    """A bad ``# kvmlab:`` header line."""


@dataclass
class Header:
    """The parsed ``# kvmlab:`` header of a guest file (None / empty: not given)."""
    mode: str | None = None
    load: int | None = None
    stack: int | None = None
    memory: int | None = None
    gib: int | None = None
    irqchip: bool = False
    rom: list = field(default_factory=list)             # [(addr, size)]
    coalesced: list = field(default_factory=list)       # [(addr, size)]
    coalesced_pio: list = field(default_factory=list)   # [(port, size)]
    ioeventfd: list = field(default_factory=list)       # [(addr, len, datamatch|None)]
    ioeventfd_pio: list = field(default_factory=list)   # [(port, len, datamatch|None)]
    irqfd: list = field(default_factory=list)           # [(gsi, delay_seconds)]
    breakpoint: list = field(default_factory=list)      # [label or number, as written]


def number(text: str) -> int:
    """``0x1000``, ``4096``, ``2M``, ``512K`` -> int.

    >>> number("2M"), number("0x80000"), number("512k")
    (2097152, 524288, 524288)
    """
    t = text.strip()
    mult = 1
    if t and t[-1].lower() in _SUFFIX:
        mult = _SUFFIX[t[-1].lower()]
        t = t[:-1]
    try:
        return int(t, 0) * mult
    except ValueError:
        raise GuestError(f"{text!r} is not a number (write e.g. 0x1000, 4096 or 2M)") from None


def _range(key: str, value: str) -> tuple[int, int]:
    if "+" not in value:
        raise GuestError(f"{key}={value}: write START+SIZE, e.g. {key}=0x80000+0x1000")
    a, s = value.split("+", 1)
    return number(a), number(s)


def header_lines(source: str):
    """Yield ``(line_number, text after 'kvmlab:')`` for the header lines of ``source``."""
    for n, line in enumerate(source.splitlines(), 1):
        s = line.strip()
        if not s:
            continue
        m = _HEADER_RE.match(s)
        if m:
            yield n, m.group(1)
            continue
        if s.startswith(("#", "//", ";", "/*", "*")):
            continue
        break


def parse_header(source: str, filename: str = "<guest>") -> Header:
    """Parse the ``# kvmlab:`` lines of a guest source (see the module docstring)."""
    h = Header()
    for lineno, text in header_lines(source):
        for item in text.replace(",", " ").split():
            if "=" not in item:
                raise GuestError(f"{filename}:{lineno}: header item {item!r} is not key=value")
            key, value = (x.strip() for x in item.split("=", 1))
            key = key.lower()
            try:
                _apply(h, key, value)
            except GuestError as e:
                raise GuestError(f"{filename}:{lineno}: {e}") from None
    return h


def _apply(h: Header, key: str, value: str) -> None:
    if key == "mode":
        if value.lower() not in ("real", "protected", "long"):
            raise GuestError(f"mode={value}: use real, protected or long")
        h.mode = value.lower()
    elif key in ("load", "stack", "memory", "gib"):
        setattr(h, key, number(value))
    elif key == "irqchip":
        h.irqchip = value.lower() in ("1", "yes", "true", "on")
    elif key in ("rom", "coalesced", "coalesced_pio"):
        getattr(h, key).append(_range(key, value))
    elif key in ("ioeventfd", "ioeventfd_pio"):
        rng, _, dm = value.partition(":")
        a, n = _range(key, rng)
        if n not in (0, 1, 2, 4, 8):
            raise GuestError(f"{key}={value}: the length must be 0 (any), 1, 2, 4 or 8")
        getattr(h, key).append((a, n, number(dm) if dm else None))
    elif key == "irqfd":
        gsi, _, delay = value.partition("@")
        try:
            d = float(delay) if delay else 0.05
        except ValueError:
            raise GuestError(f"irqfd={value}: write GSI or GSI@SECONDS, e.g. irqfd=4@0.1") from None
        h.irqfd.append((number(gsi), d))
        h.irqchip = True
    elif key == "breakpoint":
        h.breakpoint.append(value)
    else:
        raise GuestError(f"unknown header key {key!r} (known: {', '.join(KEYS)})")
