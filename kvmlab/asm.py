"""Assemble guest source in-process (keystone) and disassemble it (capstone).

kvmlab guests are small GNU-as-syntax assembly files (``.intel_syntax noprefix``).
:func:`assemble` turns one into a flat binary image plus a symbol table, without
needing a toolchain on the machine::

    prog = assemble_file("guests/hello.S")
    prog.code          # bytes, loaded at prog.base
    prog.symbols       # {"_start": 0x1000, "msg": 0x1020, ...}
    prog.entry         # address of _start (or base)
    prog.lines         # {address: source line}, for breakpoints on lines
    for insn in prog.disassemble():
        print(insn)    # "0x1000: mov dx, 0x3f8"

How it works
------------
Keystone alone cannot switch bitness inside one buffer and mishandles several
directives and encodings, so this module is its own small multi-pass assembler:
it parses the source into statements, lays out labels, data directives,
``.org`` and alignment itself, and hands single instructions to keystone
(``KS_MODE_16/32/64``, Intel syntax) with every symbol already replaced by its
value.  Passes repeat until every label address is stable.  Branches
(``jmp``/``jcc``/``call``/``loop``/``jcxz``), far jumps/calls (``jmp SEL:OFF``,
``ljmp SEL, OFF``) and ``push imm`` are encoded here, because keystone gets them
wrong in 16-bit code (and loses ``push word``'s 66h prefix).  Short branches are
relaxed to near ones as needed (sizes only grow, so layout always converges).
In 64-bit code, absolute memory operands without a base register are encoded
the way GNU as does (``ModRM+SIB, disp32``), not RIP-relative or ``movabs``;
write ``[rip + label]`` for RIP-relative addressing.

Supported source
----------------
* ``.intel_syntax noprefix`` (AT&T syntax is rejected), ``.code16``,
  ``.code32``, ``.code64`` -- anywhere, as often as you like (a real-mode start
  that enters protected and long mode lives happily in one file).
* labels ``name:``, local numeric labels ``1:`` referenced as ``1b`` / ``1f``,
  ``.`` for the current address.
* ``.byte .word .short .hword .2byte .long .int .4byte .quad .8byte`` with
  expressions and label references; ``.ascii .asciz .string`` (C escapes).
* ``.org expr[, fill]`` (a number is an offset from the start of the image,
  as in GNU as: ``.org 510`` in a boot sector; ``.org label + 4`` is absolute), ``.align/.balign n[, fill]``, ``.p2align n[, fill]``
  (default fill: ``0x90``, i.e. nops, so padding inside code is harmless),
  ``.fill repeat[, size[, value]]``, ``.space/.skip n[, fill]``.
* ``.equ/.set name, expr`` and ``name = expr``.
* ``.global/.globl/.text/.data/.section/.type/.size/...`` are accepted and
  ignored: the image is one flat section.
* comments: ``#`` (also a whole line starting with ``#``), ``;``, ``//`` and
  ``/* ... */``.  Note ``;`` is a comment here (as in NASM), not GNU as's
  statement separator.
* expressions: integers (``0x1f``, ``0b101``, ``017`` octal, ``42``, ``'A'``),
  symbols, ``+ - * / % << >> & | ^ ~`` and parentheses.
* GNU as operand rules: in ``mov eax, msg`` a bare *label* is a memory
  operand (as in GNU as); write ``offset msg`` for its address.  ``.equ``
  constants are immediates.

Guest file header convention
----------------------------
A guest file may start with comment lines that tell the VMM how to run it::

    # kvmlab: mode=long        (real | protected | long)
    # kvmlab: load=0x1000      (load address of the flat image)

Only comment lines at the very top of the file (before any statement) are
looked at; several ``key=value`` pairs may share one line
(``# kvmlab: mode=real load=0x7c00``).  ``mode`` becomes
:attr:`Program.mode` (and the initial bitness until the first ``.codeNN``);
without it, the mode is taken from the first ``.code16/.code32/.code64``
(``real``/``protected``/``long``), else ``real``.  ``load`` becomes
:attr:`Program.base`; :func:`assemble_file` defaults it to ``0x1000`` and plain
:func:`assemble` to ``0``.  Explicit ``base=`` / ``mode=`` arguments win over the
header.

Limitations
-----------
No macros, ``.rept``, ``.if``, ``.include`` or ``.incbin``; one flat section;
alignment padding is single-byte nops where GNU as would use multi-byte nops;
keystone may pick a different (equivalent) encoding than GNU as for some
instructions with label immediates (e.g. ``add eax, offset lbl`` may use the
sign-extended imm8 form).
"""

from __future__ import annotations

import ast
import os
import re
from dataclasses import dataclass, field

import capstone
import keystone

__all__ = ["AsmError", "Insn", "Program", "assemble", "assemble_file", "disassemble"]

MODES = {"real": 16, "protected": 32, "long": 64}
_BITS_TO_MODE = {v: k for k, v in MODES.items()}
DEFAULT_LOAD = 0x1000


class AsmError(Exception):
    """An error in guest source: ``file:line: message`` plus the offending line."""

    def __init__(self, message, filename="<guest>", line=None, source=None):
        self.msg = message
        self.filename = filename
        self.line = line
        self.source = source
        where = f"{filename}:{line}: " if line is not None else f"{filename}: "
        text = where + message
        if source is not None:
            text += "\n    " + source.strip()
        super().__init__(text)


@dataclass(frozen=True)
class Insn:
    """One disassembled instruction."""

    address: int
    size: int
    bytes: bytes
    mnemonic: str
    op_str: str

    def __str__(self):
        text = f"{self.mnemonic} {self.op_str}".rstrip()
        return f"0x{self.address:x}: {text}"


_CS_MODES = {16: capstone.CS_MODE_16, 32: capstone.CS_MODE_32, 64: capstone.CS_MODE_64}
_cs_cache: dict = {}


def disassemble(code: bytes, address: int, bits: int, count: int = 0) -> list[Insn]:
    """Disassemble ``code`` loaded at ``address`` as ``bits``-bit x86 (Intel syntax).

    Stops at the first undecodable byte; ``count`` limits the number of
    instructions (0 = all).
    """
    if bits not in _CS_MODES:
        raise ValueError(f"bits must be 16, 32 or 64, not {bits!r}")
    cs = _cs_cache.get(bits)
    if cs is None:
        cs = _cs_cache[bits] = capstone.Cs(capstone.CS_ARCH_X86, _CS_MODES[bits])
    return [
        Insn(i.address, i.size, bytes(i.bytes), i.mnemonic, i.op_str)
        for i in cs.disasm(bytes(code), address, count)
    ]


@dataclass
class Program:
    """An assembled guest: a flat image loaded at ``base``."""

    code: bytes
    base: int
    symbols: dict[str, int]
    entry: int
    mode: str
    lines: dict[int, int] = field(default_factory=dict)
    #: (start, end, bits) of each run of instructions, in address order
    code_ranges: list[tuple[int, int, int]] = field(default_factory=list)
    filename: str = "<guest>"

    @property
    def end(self) -> int:
        return self.base + len(self.code)

    def bits_at(self, addr: int) -> int:
        """Bitness (16/32/64) the code at ``addr`` was assembled for."""
        for start, end, bits in self.code_ranges:
            if start <= addr < end:
                return bits
        return MODES[self.mode]

    def disassemble(self, addr: int | str | None = None, count: int | None = None) -> list[Insn]:
        """Disassemble the program's instructions.

        With no ``addr``, every run of instructions (data is skipped).  With an
        address (or a symbol name), from there to the end of its run of
        instructions (or of the image), at most ``count`` instructions.
        """
        if isinstance(addr, str):
            addr = self.symbols[addr]
        out: list[Insn] = []
        if addr is None:
            for start, end, bits in self.code_ranges:
                out += disassemble(self.code[start - self.base:end - self.base], start, bits)
        else:
            if not self.base <= addr < self.end:
                raise ValueError(f"address 0x{addr:x} is outside the image")
            end = self.end
            bits = MODES[self.mode]
            for s, e, b in self.code_ranges:
                if s <= addr < e:
                    end, bits = e, b
                    break
            out = disassemble(self.code[addr - self.base:end - self.base], addr, bits)
        return out if count is None else out[:count]

    def line_of(self, addr: int) -> int | None:
        return self.lines.get(addr)

    def address_of_line(self, line: int) -> int | None:
        """First address generated by source line ``line`` (or a later line)."""
        best = None
        for a, ln in self.lines.items():
            if ln >= line and (best is None or (ln, a) < best):
                best = (ln, a)
        return None if best is None else best[1]


# --------------------------------------------------------------------------
# lexical helpers

_REG_RE = re.compile(
    r"""(?x)^(
        [abcd][lh] | [abcd]x | e[abcd]x | r[abcd]x |
        (?:[sd]i|[sb]p)l? | e(?:[sd]i|[sb]p) | r(?:[sd]i|[sb]p) |
        r(?:[89]|1[0-5])[bwdl]? | [c-gs]s | [re]?ip |
        cr[0-8] | dr[0-7] | tr[0-7] | st(?:\(\d\))? | mm[0-7] | [xyz]mm\d\d? | k[0-7]
    )$""")
_KEYWORDS = {"byte", "word", "dword", "fword", "qword", "tbyte", "oword", "xmmword",
             "ymmword", "zmmword", "ptr", "offset", "short", "near", "far", "flat"}
_SEGS = {"cs", "ds", "es", "fs", "gs", "ss"}
_PREFIXES = {"rep", "repe", "repz", "repne", "repnz", "lock", "data16", "data32",
             "addr16", "addr32", "cs", "ds", "es", "fs", "gs", "ss", "rex", "rex64"}

_TOKEN_RE = re.compile(r"""
    (?P<ws>\s+)
  | (?P<num>0[xX][0-9a-fA-F]+|0[bB][01]+|\d+)
  | (?P<chr>'(?:\\.|[^\\])'?)
  | (?P<id>[A-Za-z_.$][\w.$@]*)
  | (?P<op><<|>>|[-+*/%&|^~()\[\]:,!<>=])
""", re.X)


def _is_reg(name: str) -> bool:
    return bool(_REG_RE.match(name.lower()))


def _tokens(text: str):
    pos = 0
    out = []
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if not m:
            raise _Err(f"unexpected character {text[pos]!r}")
        pos = m.end()
        if m.lastgroup != "ws":
            out.append((m.lastgroup, m.group()))
    return out


_ESCAPES = {"n": 10, "t": 9, "r": 13, "b": 8, "f": 12, "v": 11, "a": 7, "e": 27,
            "\\": 92, '"': 34, "'": 39}


def _char_value(tok: str) -> int:
    body = tok[1:]
    if body.endswith("'") and len(body) > 1:
        body = body[:-1]
    if body.startswith("\\"):
        c = body[1:]
        if c in _ESCAPES:
            return _ESCAPES[c]
        if c.isdigit():
            return int(c, 8)
        raise _Err(f"bad character escape {tok!r}")
    return ord(body)


def _num_value(tok: str) -> int:
    t = tok.lower()
    if t.startswith("0x"):
        return int(t, 16)
    if t.startswith("0b"):
        return int(t[2:], 2)
    if len(t) > 1 and t.startswith("0"):
        return int(t, 8)
    return int(t, 10)


def _parse_string(text: str) -> bytes:
    """Parse a double-quoted string literal with C escapes."""
    text = text.strip()
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        raise _Err(f"expected a string in double quotes, got {text!r}")
    body = text[1:-1]
    out = bytearray()
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out += c.encode("utf-8")
            i += 1
            continue
        i += 1
        if i >= len(body):
            raise _Err("string ends in a backslash")
        c = body[i]
        if c in _ESCAPES:
            out.append(_ESCAPES[c])
            i += 1
        elif c in "01234567":
            j = i
            while j < len(body) and j < i + 3 and body[j] in "01234567":
                j += 1
            out.append(int(body[i:j], 8) & 0xFF)
            i = j
        elif c in "xX":
            j = i + 1
            while j < len(body) and body[j] in "0123456789abcdefABCDEF":
                j += 1
            if j == i + 1:
                raise _Err("\\x used with no following hex digits")
            out.append(int(body[i + 1:j], 16) & 0xFF)
            i = j
        else:
            out += c.encode()
            i += 1
    return bytes(out)


def _split_args(text: str) -> list[str]:
    """Split on top-level commas (not inside quotes, brackets or parentheses)."""
    args, depth, cur, quote = [], 0, [], None
    i = 0
    while i < len(text):
        c = text[i]
        if quote:
            cur.append(c)
            if c == "\\" and i + 1 < len(text):
                cur.append(text[i + 1])
                i += 1
            elif c == quote:
                quote = None
        elif c == '"':
            quote = c
            cur.append(c)
        elif c in "([":
            depth += 1
            cur.append(c)
        elif c in ")]":
            depth -= 1
            cur.append(c)
        elif c == "," and depth == 0:
            args.append("".join(cur).strip())
            cur = []
        else:
            cur.append(c)
        i += 1
    last = "".join(cur).strip()
    if last or args:
        args.append(last)
    return args


def _strip_comments(source: str) -> list[str]:
    """Remove comments, keeping line numbering (one output line per input line)."""
    out = []
    in_block = False
    for line in source.splitlines():
        res = []
        i, n = 0, len(line)
        while i < n:
            if in_block:
                j = line.find("*/", i)
                if j < 0:
                    i = n
                else:
                    in_block = False
                    i = j + 2
                    res.append(" ")
                continue
            c = line[i]
            if c == '"':
                j = i + 1
                while j < n and line[j] != '"':
                    j += 2 if line[j] == "\\" else 1
                res.append(line[i:j + 1])
                i = j + 1
            elif c == "'":
                m = re.compile(r"'(?:\\.|[^\\])'?").match(line, i)
                seg = m.group() if m else c
                res.append(seg)
                i += len(seg)
            elif c in "#;":
                break
            elif line.startswith("//", i):
                break
            elif line.startswith("/*", i):
                in_block = True
                i += 2
            else:
                res.append(c)
                i += 1
        out.append("".join(res))
    return out


class _Err(Exception):
    """Internal error without position; converted to AsmError with file:line."""


class _Undefined(Exception):
    def __init__(self, name):
        self.name = name


# --------------------------------------------------------------------------
# statements

@dataclass
class _Stmt:
    kind: str          # "label", "dir", "insn", "code"
    line: int
    src: str
    name: str = ""     # label name / directive name / mnemonic
    args: str = ""     # directive args / instruction operands
    bits: int = 16
    long_branch: bool = False   # sticky relaxation flag


_LABEL_RE = re.compile(r"^\s*([A-Za-z_.$][\w.$@]*|\d+)\s*:(?!:)")
_ASSIGN_RE = re.compile(r"^\s*([A-Za-z_.$][\w.$@]*)\s*=(?!=)\s*(.*)$")
_HEADER_RE = re.compile(r"^\s*(?:#|//|;)\s*kvmlab\s*:\s*(.*)$", re.I)
_LOCALREF_RE = re.compile(r"(?<![\w.$@])(\d+)([bf])(?![\w.$@])")


def _parse_header(source: str) -> dict[str, str]:
    hdr: dict[str, str] = {}
    for line in source.splitlines():
        s = line.strip()
        if not s:
            continue
        m = _HEADER_RE.match(s)
        if m:
            for item in m.group(1).replace(",", " ").split():
                if "=" in item:
                    k, v = item.split("=", 1)
                    hdr[k.strip().lower()] = v.strip()
            continue
        if s.startswith(("#", "//", ";", "/*", "*")):
            continue
        break
    return hdr


def _local_name(num: str, k: int) -> str:
    return f".L{num}$loc{k}"


def _parse(source: str, bits0: int, filename: str):
    raw = source.splitlines()
    lines = _strip_comments(source)
    stmts: list[_Stmt] = []
    local_count: dict[str, int] = {}
    first_code = None

    def rewrite_local_refs(text, lineno):
        def sub(m):
            num, d = m.group(1), m.group(2)
            k = local_count.get(num, 0)
            if d == "b":
                if k == 0:
                    raise AsmError(f"backward reference to undefined local label {num}b",
                                   filename, lineno, raw[lineno - 1])
                return _local_name(num, k)
            return _local_name(num, k + 1)
        return _LOCALREF_RE.sub(sub, text)

    bits = bits0
    for idx, text in enumerate(lines):
        lineno = idx + 1
        src = raw[idx]
        rest = text
        while True:
            m = _LABEL_RE.match(rest)
            if not m:
                break
            name = m.group(1)
            if name.isdigit():
                local_count[name] = local_count.get(name, 0) + 1
                name = _local_name(name, local_count[name])
            stmts.append(_Stmt("label", lineno, src, name, bits=bits))
            rest = rest[m.end():]
        rest = rest.strip()
        if not rest:
            continue
        m = _ASSIGN_RE.match(rest)
        if m and not rest.startswith("."):
            stmts.append(_Stmt("dir", lineno, src, ".set",
                               m.group(1) + "," + rewrite_local_refs(m.group(2), lineno), bits=bits))
            continue
        if m and rest.startswith(".") and " " not in m.group(1):
            stmts.append(_Stmt("dir", lineno, src, ".set",
                               m.group(1) + "," + rewrite_local_refs(m.group(2), lineno), bits=bits))
            continue
        parts = rest.split(None, 1)
        word = parts[0].lower()
        args = parts[1].strip() if len(parts) > 1 else ""
        if word.startswith("."):
            if word in (".code16", ".code16gcc", ".code32", ".code64"):
                bits = {".code16": 16, ".code16gcc": 16, ".code32": 32, ".code64": 64}[word]
                if first_code is None:
                    first_code = bits
                stmts.append(_Stmt("code", lineno, src, word, bits=bits))
                continue
            if word not in (".ascii", ".asciz", ".string"):
                args = rewrite_local_refs(args, lineno)
            stmts.append(_Stmt("dir", lineno, src, word, args, bits=bits))
        else:
            stmts.append(_Stmt("insn", lineno, src, word, rewrite_local_refs(args, lineno),
                               bits=bits))
    return stmts, first_code


# --------------------------------------------------------------------------
# keystone

_ks_cache: dict = {}
_abs_value = [0]
_ABS_SYM = "__kvmlab_abs"


def _resolver(sym, value):
    if sym == _ABS_SYM.encode():
        value[0] = _abs_value[0]
        return True
    return False


def _ks(bits):
    ks = _ks_cache.get(bits)
    if ks is None:
        mode = {16: keystone.KS_MODE_16, 32: keystone.KS_MODE_32, 64: keystone.KS_MODE_64}[bits]
        ks = keystone.Ks(keystone.KS_ARCH_X86, mode)
        ks.syntax = keystone.KS_OPT_SYNTAX_INTEL
        ks.sym_resolver = _resolver
        _ks_cache[bits] = ks
    return ks


_enc_cache: dict = {}


def _keystone(text: str, bits: int, addr: int, absval: int | None = None) -> bytes:
    key = (text, bits, addr, absval)
    hit = _enc_cache.get(key)
    if hit is not None:
        return hit
    _abs_value[0] = absval or 0
    try:
        enc, _ = _ks(bits).asm(text, addr)
    except keystone.KsError as e:
        msg = str(e)
        msg = re.sub(r"\s*\(KS_ERR_\w+\)", "", msg).lower()
        if "missing cpu feature" in msg:
            msg = f"instruction or operand not valid in {bits}-bit code"
        raise _Err(f"{msg}: {text!r} ({bits}-bit)") from None
    if not enc:
        raise _Err(f"keystone produced no bytes for {text!r} ({bits}-bit)")
    out = bytes(enc)
    if absval is not None and bits == 64:
        out = _fix_movabs(out)
    _enc_cache[key] = out
    return out


def _fix_movabs(b: bytes) -> bytes:
    """Rewrite ``mov acc, moffs64`` (A0-A3) as GNU as's ``mov r, [disp32]`` (8A/8B/88/89)."""
    i = 0
    while i < len(b) and (b[i] in (0x66, 0x67, 0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65)
                          or 0x40 <= b[i] <= 0x4F):
        i += 1
    if i < len(b) and 0xA0 <= b[i] <= 0xA3 and len(b) == i + 9:
        moffs = int.from_bytes(b[i + 1:], "little")
        if moffs >= 1 << 63:
            moffs -= 1 << 64
        if -(1 << 31) <= moffs < (1 << 31):
            op = {0xA0: 0x8A, 0xA1: 0x8B, 0xA2: 0x88, 0xA3: 0x89}[b[i]]
            return (b[:i] + bytes([op, 0x04, 0x25])
                    + (moffs & 0xFFFFFFFF).to_bytes(4, "little"))
    return b


# --------------------------------------------------------------------------
# the assembler

_JCC = {
    "jo": 0, "jno": 1, "jb": 2, "jc": 2, "jnae": 2, "jnb": 3, "jae": 3, "jnc": 3,
    "je": 4, "jz": 4, "jne": 5, "jnz": 5, "jbe": 6, "jna": 6, "jnbe": 7, "ja": 7,
    "js": 8, "jns": 9, "jp": 10, "jpe": 10, "jnp": 11, "jpo": 11, "jl": 12, "jnge": 12,
    "jnl": 13, "jge": 13, "jle": 14, "jng": 14, "jnle": 15, "jg": 15,
}
_LOOPS = {"loopne": 0xE0, "loopnz": 0xE0, "loope": 0xE1, "loopz": 0xE1, "loop": 0xE2}
_DATA_SIZES = {".byte": 1, ".word": 2, ".short": 2, ".hword": 2, ".2byte": 2,
               ".value": 2, ".long": 4, ".int": 4, ".4byte": 4, ".quad": 8, ".8byte": 8}
_IGNORED = {".global", ".globl", ".text", ".data", ".bss", ".section", ".type", ".size",
            ".file", ".ident", ".local", ".extern", ".weak", ".hidden", ".previous",
            ".end", ".arch", ".cfi_startproc", ".cfi_endproc", ".loc", ".note"}
_SHIFT = 0x1000_0000  # labels move by this in the "relocatability" probe


class _Assembler:
    def __init__(self, stmts, base, filename, label_names):
        self.stmts = stmts
        self.base = base
        self.filename = filename
        self.label_names = label_names
        self.prev: dict[str, tuple[int, int]] = {}

    # -- expressions ------------------------------------------------------
    def lookup(self, name):
        if name in self.syms:
            return self.syms[name]
        if name in self.prev:
            return self.prev[name]
        if name in self.defined_names:
            self.unresolved = True
            return (self.addr, self.addr + _SHIFT)
        raise _Undefined(name)

    def eval2(self, text: str) -> tuple[int, int]:
        """Evaluate an expression; returns (value, value with labels shifted)."""
        toks = _tokens(text)
        if not toks:
            raise _Err("missing expression")
        a, b = [], []
        for kind, tok in toks:
            if kind == "num":
                v = str(_num_value(tok))
                a.append(v)
                b.append(v)
            elif kind == "chr":
                v = str(_char_value(tok))
                a.append(v)
                b.append(v)
            elif kind == "id":
                if tok == ".":
                    va, vb = self.addr, self.addr + _SHIFT
                elif _is_reg(tok) or tok.lower() in _KEYWORDS:
                    raise _Err(f"unexpected {tok!r} in expression")
                else:
                    va, vb = self.lookup(tok)
                a.append(f"({va})")
                b.append(f"({vb})")
            elif tok in ("[", "]", ":", ",", "=", "!", "<", ">"):
                raise _Err(f"unexpected {tok!r} in expression")
            else:
                tok = "//" if tok == "/" else tok
                a.append(tok)
                b.append(tok)
        try:
            return _safe_eval(" ".join(a)), _safe_eval(" ".join(b))
        except (SyntaxError, ZeroDivisionError, ValueError, TypeError) as e:
            raise _Err(f"bad expression {text.strip()!r}: {e}") from None

    def eval(self, text: str) -> int:
        return self.eval2(text)[0]

    # -- passes -----------------------------------------------------------
    def run(self):
        self.defined_names = set(self.label_names)
        for _ in range(64):
            final = self.one_pass()
            if final:
                return
            self.prev = dict(self.syms)
        raise AsmError("label addresses did not converge", self.filename)

    def one_pass(self) -> bool:
        self.syms: dict[str, tuple[int, int]] = {}
        self.addr = self.base
        self.out = bytearray()
        self.lines: dict[int, int] = {}
        self.ranges: list[list[int]] = []
        self.unresolved = False
        self.deferred = []
        for st in self.stmts:
            try:
                self.statement(st)
            except _Undefined as e:
                raise AsmError(f"undefined symbol {_pretty(e.name)!r}", self.filename, st.line,
                               st.src) from None
            except _Err as e:
                raise AsmError(str(e), self.filename, st.line, st.src) from None
        final = not self.unresolved and self.syms == self.prev
        if final and self.deferred:
            msg, st = self.deferred[0]
            raise AsmError(msg, self.filename, st.line, st.src)
        return final

    def defer(self, msg, st):
        """An error that may go away once the layout settles."""
        self.deferred.append((msg, st))

    def emit(self, data: bytes, st: _Stmt, code=False):
        if data:
            self.lines.setdefault(self.addr, st.line)
        if code:
            if self.ranges and self.ranges[-1][1] == self.addr and self.ranges[-1][2] == st.bits:
                self.ranges[-1][1] += len(data)
            else:
                self.ranges.append([self.addr, self.addr + len(data), st.bits])
        self.out += data
        self.addr += len(data)

    def statement(self, st: _Stmt):
        if st.kind == "label":
            if st.name in self.syms:
                raise _Err(f"symbol {_pretty(st.name)!r} is already defined")
            self.syms[st.name] = (self.addr, self.addr + _SHIFT)
        elif st.kind == "code":
            pass
        elif st.kind == "dir":
            self.directive(st)
        else:
            self.emit(self.instruction(st), st, code=True)

    # -- directives -------------------------------------------------------
    def directive(self, st: _Stmt):
        d, args = st.name, st.args
        if d in _DATA_SIZES:
            size = _DATA_SIZES[d]
            data = bytearray()
            for arg in _split_args(args):
                v = self.eval(arg)
                if not -(1 << (8 * size - 1)) <= v < (1 << (8 * size)):
                    raise _Err(f"value 0x{v:x} does not fit in {size} byte(s)")
                data += (v & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
            self.emit(bytes(data), st)
        elif d in (".ascii", ".asciz", ".string"):
            data = bytearray()
            for arg in _split_args(args):
                data += _parse_string(arg)
                if d != ".ascii":
                    data.append(0)
            self.emit(bytes(data), st)
        elif d == ".org":
            a = _split_args(args)
            target, shifted = self.eval2(a[0])
            if target == shifted:  # a plain number is an offset from the start, as in GNU as
                target += self.base
            fill = self.eval(a[1]) & 0xFF if len(a) > 1 else 0
            if target < self.addr:  # may be a stale guess; an error if the layout is final
                self.defer(f".org 0x{target:x} moves backwards (already at 0x{self.addr:x})", st)
                return
            self.emit(bytes([fill]) * (target - self.addr), st)
        elif d in (".align", ".balign", ".p2align"):
            a = _split_args(args)
            n = self.eval(a[0])
            if d == ".p2align":
                n = 1 << n
            if n <= 0 or n & (n - 1):
                raise _Err(f"alignment {n} is not a power of 2")
            fill = self.eval(a[1]) & 0xFF if len(a) > 1 and a[1] else 0x90
            pad = (-self.addr) % n
            if len(a) > 2 and a[2] and pad > self.eval(a[2]):
                pad = 0
            self.emit(bytes([fill]) * pad, st)
        elif d in (".space", ".skip", ".zero"):
            a = _split_args(args)
            n = self.eval(a[0])
            fill = self.eval(a[1]) & 0xFF if len(a) > 1 else 0
            if n < 0:
                raise _Err(f"negative size {n}")
            self.emit(bytes([fill]) * n, st)
        elif d == ".fill":
            a = _split_args(args)
            rep = self.eval(a[0])
            size = self.eval(a[1]) if len(a) > 1 and a[1] else 1
            val = self.eval(a[2]) if len(a) > 2 else 0
            if rep < 0 or not 0 <= size <= 8:
                raise _Err("bad .fill arguments")
            item = (val & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
            self.emit(item * rep, st)
        elif d in (".equ", ".set", ".equiv"):
            a = _split_args(args)
            if len(a) != 2 or not re.fullmatch(r"[A-Za-z_.$][\w.$@]*", a[0]):
                raise _Err(f"expected '{d} name, expression'")
            if d == ".equiv" and a[0] in self.syms:
                raise _Err(f"symbol {a[0]!r} is already defined")
            self.syms[a[0]] = self.eval2(a[1])
        elif d == ".intel_syntax":
            if args.strip() and args.strip().lower() != "noprefix":
                raise _Err("only '.intel_syntax noprefix' is supported")
        elif d == ".att_syntax":
            raise _Err("AT&T syntax is not supported; use .intel_syntax noprefix")
        elif d in _IGNORED:
            pass
        else:
            raise _Err(f"unsupported directive {d}")

    # -- instructions -----------------------------------------------------
    def instruction(self, st: _Stmt) -> bytes:
        bits = st.bits
        prefixes = []
        words = (st.name + " " + st.args).split(None, 1)
        mnem, ops = words[0], (words[1] if len(words) > 1 else "")
        while mnem in _PREFIXES and ops:
            prefixes.append(mnem)
            w = ops.split(None, 1)
            mnem, ops = w[0].lower(), (w[1] if len(w) > 1 else "")
        operands = _split_args(ops) if ops.strip() else []
        if not prefixes:
            special = self.special(st, mnem, operands, bits)
            if special is not None:
                return special
        absval = None
        rip_target = None
        new_ops = []
        for op in operands:
            text, a, r = self.operand(op, bits)
            if a is not None:
                absval = a
            if r is not None:
                rip_target = r
            new_ops.append(text)
        text = " ".join(prefixes + [mnem])
        if new_ops:
            text += " " + ", ".join(new_ops)
        if rip_target is None:
            out = _keystone(text, bits, self.addr, absval)
            if (bits != 16 and out[:1] == b"\x66" and operands
                    and operands[0].strip().lower() in _SEGS
                    and mnem in ("mov", "push", "pop")):
                out = out[1:]  # keystone: 'mov ds, ax' / 'push ds' get a needless 66h
            return out
        probe = _keystone(text.replace("__kvmlab_rip", "0"), bits, self.addr)
        disp = rip_target - (self.addr + len(probe))
        if not -(1 << 31) <= disp < (1 << 31):
            raise _Err("RIP-relative target out of range")
        sdisp = f"+ {disp:#x}" if disp >= 0 else f"- {-disp:#x}"
        return _keystone(text.replace("+ __kvmlab_rip", sdisp), bits, self.addr)

    def operand(self, op: str, bits: int):
        """Rewrite one operand with symbols replaced by numbers.

        Returns (text, absolute-address-or-None, rip-target-or-None).
        """
        toks = _tokens(op)
        low = [t.lower() for _, t in toks]
        if "[" in low:
            i, j = low.index("["), len(low) - 1 - low[::-1].index("]")
            inner = toks[i + 1:j]
            outer_pre = toks[:i]
            # GNU as allows 'label[bx]' == '[bx + label]'
            pre_expr = []
            while outer_pre and outer_pre[-1][0] in ("id", "num", "op") and not (
                    outer_pre[-1][1].lower() in _KEYWORDS or outer_pre[-1][1] == ":"
                    or _is_reg(outer_pre[-1][1])):
                pre_expr.insert(0, outer_pre.pop())
            if pre_expr:
                inner = pre_expr + [("op", "+")] + inner
            pre = " ".join(t for _, t in outer_pre)
            pre = pre.replace(" :", ":")
            text, absval, rip = self.memory(inner, bits)
            return (pre + " " + text).strip(), absval, rip
        if not toks:
            raise _Err("empty operand")
        if len(toks) == 1 and toks[0][0] == "id" and _is_reg(toks[0][1]):
            return toks[0][1], None, None
        # size keywords / ptr / offset in front
        kw = []
        rest = list(toks)
        while rest and rest[0][0] == "id" and rest[0][1].lower() in _KEYWORDS:
            kw.append(rest.pop(0)[1].lower())
        if "offset" in kw:
            kw.remove("offset")
            v = self.eval(" ".join(t for _, t in rest))
            return (" ".join(kw) + " " + _hex(v)).strip(), None, None
        # segment override 'fs:expr' -> memory
        if len(rest) >= 2 and rest[1][1] == ":" and rest[0][1].lower() in _SEGS:
            seg = rest[0][1]
            text, absval, rip = self.memory(rest[2:], bits)
            return (" ".join(kw) + f" {seg}:" + text).strip(), absval, rip
        expr = " ".join(t for _, t in rest)
        v, vs = self.eval2(expr)
        if v != vs or "ptr" in kw:
            text, absval, rip = self.memory(rest, bits)
            return (" ".join(kw) + " " + text).strip(), absval, rip
        return (" ".join(kw) + " " + _hex(v)).strip(), None, None

    def memory(self, toks, bits):
        """Rewrite the inside of a memory operand; returns '[...]' text."""
        has_reg = any(k == "id" and _is_reg(t) for k, t in toks)
        if not has_reg:
            v = self.eval(" ".join(t for _, t in toks))
            if bits == 64:
                return f"[{_ABS_SYM}]", v, None
            return f"[{_hex(v)}]", None, None
        regs = [t.lower() for k, t in toks if k == "id" and _is_reg(t)]
        if "rip" in regs or "eip" in regs:
            rest = [(k, t) for k, t in toks if t.lower() not in ("rip", "eip")]
            expr = " ".join(t for _, t in rest).strip()
            expr = expr.lstrip("+").strip() or "0"
            v, vs = self.eval2(expr)
            if v == vs:  # a plain displacement
                return f"[{regs[0]} + {_hex(v)}]", None, None
            return f"[{regs[0]} + __kvmlab_rip]", None, v
        parts = []
        for k, t in toks:
            if k == "id" and not _is_reg(t) and t.lower() not in _KEYWORDS:
                v = self.addr if t == "." else self.lookup(t)[0]
                parts.append(_hex(v))
            elif k == "num":
                parts.append(_hex(_num_value(t)))
            elif k == "chr":
                parts.append(_hex(_char_value(t)))
            else:
                parts.append(t)
        return "[" + " ".join(parts) + "]", None, None

    # -- instructions encoded here ------------------------------------------
    def special(self, st, mnem, operands, bits):
        if len(operands) == 1 and (mnem in ("jmp", "call") or mnem in _JCC or mnem in _LOOPS
                                   or mnem in ("jcxz", "jecxz", "jrcxz")):
            op = operands[0]
            toks = _tokens(op)
            low = [t.lower() for _, t in toks]
            if ":" in low and mnem in ("jmp", "call") and "[" not in low:
                i = low.index(":")
                if not (i == 1 and low[0] in _SEGS):
                    return self.far(mnem, " ".join(t for _, t in toks[:i]),
                                    " ".join(t for _, t in toks[i + 1:]), bits)
            force_short = False
            if low and low[0] in ("short", "near"):
                force_short = low[0] == "short"
                toks, low = toks[1:], low[1:]
            if ("[" in low or "ptr" in low or ":" in low or "far" in low or not toks
                    or any(k == "id" and _is_reg(t) for k, t in toks)):
                return None
            target = self.eval(" ".join(t for _, t in toks))
            return self.branch(st, mnem, target, bits, force_short)
        if mnem in ("ljmp", "lcall") and len(operands) == 2:
            return self.far(mnem[1:], operands[0], operands[1], bits)
        if mnem == "push" and len(operands) == 1:
            return self.push_imm(operands[0], bits)
        if mnem in ("ret", "retf", "lret") and len(operands) <= 1:
            # keystone adds a bogus 66h prefix to ret/retf in 16-bit code
            far = mnem != "ret"
            if not operands:
                return b"\xcb" if far else b"\xc3"
            v = self.eval(operands[0])
            if not 0 <= v <= 0xFFFF:
                raise _Err(f"{mnem} immediate 0x{v:x} does not fit in 16 bits")
            return (b"\xca" if far else b"\xc2") + v.to_bytes(2, "little")
        if mnem in ("iret", "iretw", "iretd", "iretq") and not operands:
            # keystone encodes 'iret' in 32-bit code as iretw (66 cf)
            size = {"iret": 16 if bits == 16 else 32, "iretw": 16, "iretd": 32, "iretq": 64}[mnem]
            if size == 64:
                if bits != 64:
                    raise _Err(f"iretq is only valid in 64-bit code")
                return b"\x48\xcf"
            return (b"\x66\xcf") if (size == 16) != (bits == 16) else b"\xcf"
        return None

    def branch(self, st, mnem, target, bits, force_short):
        addr = self.addr
        osize = 2 if bits == 16 else 4

        def rel(size_before, width):
            end = addr + size_before + width
            d = target - end
            if width == 2:
                return d, (d & 0xFFFF).to_bytes(2, "little")
            return d, (d & (1 << 32) - 1).to_bytes(4, "little") if -(1 << 31) <= d < (1 << 31) else None

        def short(prefix: bytes, opcode: int):
            d = target - (addr + len(prefix) + 2)
            if -128 <= d <= 127:
                return prefix + bytes([opcode, d & 0xFF])
            return None

        if mnem in _LOOPS or mnem in ("jcxz", "jecxz", "jrcxz"):
            if mnem in _LOOPS:
                prefix, opc = b"", _LOOPS[mnem]
            else:
                want = {"jcxz": 16, "jecxz": 32, "jrcxz": 64}[mnem]
                if (bits == 64 and want == 16) or (bits != 64 and want == 64):
                    raise _Err(f"{mnem} is not valid in {bits}-bit code")
                prefix, opc = (b"" if want == bits else b"\x67"), 0xE3
            b = short(prefix, opc)
            if b is None:
                self.defer(f"{mnem} target is out of range (more than 128 bytes away)", st)
                return prefix + bytes([opc, 0])
            return b
        if mnem == "call":
            opc = b"\xe8"
            d, enc = rel(1, osize)
            if enc is None:
                raise _Err("call target out of range")
            return opc + enc
        if mnem == "jmp":
            short_op, near_op = 0xEB, b"\xe9"
        else:
            cc = _JCC[mnem]
            short_op, near_op = 0x70 | cc, bytes([0x0F, 0x80 | cc])
        if not st.long_branch:
            b = short(b"", short_op)
            if b is not None:
                return b
            if force_short:
                self.defer(f"short {mnem} target is out of range", st)
                return bytes([short_op, 0])
            st.long_branch = True
        d, enc = rel(len(near_op), osize)
        if enc is None:
            raise _Err(f"{mnem} target out of range")
        return near_op + enc

    def far(self, mnem, sel, off, bits):
        if bits == 64:
            raise _Err(f"far {mnem} with an immediate pointer is not valid in 64-bit code")
        off_toks = [t for t in _tokens(off) if t[1].lower() not in ("offset", "far", "ptr")]
        selv = self.eval(sel)
        offv = self.eval(" ".join(t for _, t in off_toks))
        width = 2 if bits == 16 else 4
        if not 0 <= selv <= 0xFFFF:
            raise _Err(f"segment selector 0x{selv:x} does not fit in 16 bits")
        if not -(1 << (8 * width - 1)) <= offv < (1 << (8 * width)):
            raise _Err(f"far {mnem} offset 0x{offv:x} does not fit in {8 * width} bits")
        opc = 0xEA if mnem == "jmp" else 0x9A
        return (bytes([opc]) + (offv & ((1 << 8 * width) - 1)).to_bytes(width, "little")
                + selv.to_bytes(2, "little"))

    def push_imm(self, op, bits):
        toks = _tokens(op)
        low = [t.lower() for _, t in toks]
        if "[" in low or any(k == "id" and _is_reg(t) for k, t in toks):
            return None
        size = {16: 2, 32: 4, 64: 8}[bits]
        kw = []
        while toks and toks[0][0] == "id" and toks[0][1].lower() in _KEYWORDS:
            kw.append(toks.pop(0)[1].lower())
        for k, n in (("word", 2), ("dword", 4), ("qword", 8)):
            if k in kw:
                size = n
        is_offset = "offset" in kw
        if not toks or ":" in low:
            return None
        v, vs = self.eval2(" ".join(t for _, t in toks))
        if v != vs and not is_offset:
            return None  # 'push label' is a memory operand, as in GNU as
        if bits == 64 and size == 4 or bits != 64 and size == 8:
            raise _Err(f"push of a {size * 8}-bit immediate is not valid in {bits}-bit code")
        default = 2 if bits == 16 else (4 if bits == 32 else 8)
        prefix = b"\x66" if size != default else b""
        immw = 2 if size == 2 else 4
        lo = -(1 << (8 * immw - 1))
        hi = (1 << (8 * immw)) if size != 8 else (1 << 31)
        if not lo <= v < hi:
            raise _Err(f"push immediate 0x{v:x} does not fit in {immw * 8} bits")
        if -128 <= v <= 127 and v == vs:
            return prefix + bytes([0x6A, v & 0xFF])
        return prefix + b"\x68" + (v & ((1 << 8 * immw) - 1)).to_bytes(immw, "little")


def _hex(v: int) -> str:
    return hex(v) if v >= 0 else f"-{hex(-v)}"


_LOCALNAME_RE = re.compile(r"^\.L(\d+)\$loc\d+$")


def _pretty(name: str) -> str:
    m = _LOCALNAME_RE.match(name)
    if m:
        return m.group(1)
    return name


_ALLOWED_NODES = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Add, ast.Sub,
                  ast.Mult, ast.FloorDiv, ast.Mod, ast.LShift, ast.RShift, ast.BitAnd,
                  ast.BitOr, ast.BitXor, ast.Invert, ast.USub, ast.UAdd)


def _safe_eval(expr: str) -> int:
    tree = ast.parse(expr, mode="eval")
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED_NODES):
            raise ValueError(f"unsupported syntax in {expr!r}")
    v = eval(compile(tree, "<expr>", "eval"), {"__builtins__": {}}, {})
    if not isinstance(v, int):
        raise ValueError("not an integer")
    return v


# --------------------------------------------------------------------------
# public entry points

def assemble(source: str, *, filename: str = "<guest>", base: int | None = None,
             mode: str | None = None) -> Program:
    """Assemble GNU-as (Intel syntax) guest source into a flat :class:`Program`.

    ``base`` is the load address (default: the ``# kvmlab: load=`` header, else 0);
    ``mode`` is ``"real"``, ``"protected"`` or ``"long"`` (default: the
    ``# kvmlab: mode=`` header, else the first ``.codeNN``, else ``"real"``); it
    also sets the bitness used before the first ``.codeNN``.

    >>> p = assemble('''
    ... .code16
    ... _start: mov dx, 0x3f8
    ...         out dx, al
    ...         jmp _start
    ... ''', base=0x1000)
    >>> p.code.hex(), hex(p.entry), p.mode
    ('baf803eeebfa', '0x1000', 'real')
    >>> for insn in p.disassemble(): print(insn)
    0x1000: mov dx, 0x3f8
    0x1003: out dx, al
    0x1004: jmp 0x1000
    """
    hdr = _parse_header(source)
    if mode is None and "mode" in hdr:
        mode = hdr["mode"].lower()
    if mode is not None and mode not in MODES:
        raise AsmError(f"unknown mode {mode!r} (expected real, protected or long)", filename)
    if base is None:
        if "load" in hdr:
            try:
                base = int(hdr["load"], 0)
            except ValueError:
                raise AsmError(f"bad load address {hdr['load']!r} in header", filename) from None
        else:
            base = 0
    bits0 = MODES[mode] if mode else None
    stmts, first_code = _parse(source, bits0 or first_code_guess(source) or 16, filename)
    if mode is None:
        mode = _BITS_TO_MODE[first_code] if first_code else "real"
    label_names = {s.name for s in stmts if s.kind == "label"}
    label_names |= {s.args.split(",", 1)[0].strip() for s in stmts
                    if s.kind == "dir" and s.name in (".set", ".equ", ".equiv")}
    asm = _Assembler(stmts, base, filename, label_names)
    asm.run()
    symbols = {k: v[0] for k, v in asm.syms.items() if not _LOCALNAME_RE.match(k)}
    entry = symbols.get("_start", base)
    return Program(code=bytes(asm.out), base=base, symbols=symbols, entry=entry, mode=mode,
                   lines=asm.lines, code_ranges=[tuple(r) for r in asm.ranges],
                   filename=filename)


def first_code_guess(source: str) -> int | None:
    """Bitness of the first .codeNN directive in ``source`` (None if there is none)."""
    for line in _strip_comments(source):
        m = re.search(r"(?<![\w.])\.code(16|32|64)\b", line)
        if m:
            return int(m.group(1))
    return None


def assemble_file(path, **kw) -> Program:
    """Assemble a guest file; the load address defaults to the header's or 0x1000."""
    with open(path, encoding="utf-8") as f:
        source = f.read()
    kw.setdefault("filename", os.path.basename(str(path)))
    if kw.get("base") is None and "load" not in _parse_header(source):
        kw["base"] = DEFAULT_LOAD
    return assemble(source, **kw)
