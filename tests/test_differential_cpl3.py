"""Differential, CPU level: random straight-line 64-bit programs at CPL 3 on /dev/kvm and on
the simulated CPU.

Reference §19: on this host's KVM (PVM) 64-bit code at CPL 3 with paging on runs natively on
the silicon, so /dev/kvm is an instruction oracle there (CPL 0 and 16/32-bit code go through
KVM's instruction emulator, which the unicorn differential tests and the recorded conformance
vectors cover instead).  The programs come from tests/cpu_reference/proggen.py (the generator
the kvmlab.cpu-vs-unicorn tests use; an instruction with undefined flags is followed by an
``add`` that defines them all).  Each program runs in a long-mode Machine whose identity map
is made user-accessible, entered at CPL 3 with IOPL 3 and random registers/flags, and ends
with ``out 0x80, al``; the registers after that OUT completes (immediate_exit), rflags and
the data page must match.  The seed is printed; replay with ``KVMLAB_CPL3_SEED=<seed>``.
"""
from __future__ import annotations

import os
import random
import re
import threading

import pytest

from kvmlab import asm
from kvmlab.uapi import ExitReason
from kvmlab.vmm import Machine, modes
from kvmlab.vmm.state import REG_NAMES, regs_dict
from tests import difftools
from tests.cpu_reference.proggen import Gen

BASE_SEED = int(os.environ.get("KVMLAB_CPL3_SEED", random.randrange(1 << 30)))
N_PROGRAMS = int(os.environ.get("KVMLAB_CPL3_PROGRAMS", 150))
CODE, DATA, STACK = 0x201000, 0x300000, 0x280000
FLAGS = 0x8D5          # CF PF AF ZF SF OF
IOPL3 = 0x3000


def _user_machine(backend: str) -> Machine:
    m = Machine(mode="long", memory=4 << 20, kvm=difftools.open_backend(backend), gib=1)
    pt = m.memory.view("<u8", modes.PML4_BASE, modes.page_table_size(1) // 8)
    pt[(pt & 1) == 1] |= 4                                  # U/S on every present entry
    s = m.vcpu.get_sregs()
    s.cs.selector, s.cs.dpl = 0x18 | 3, 3
    for seg in (s.ds, s.es, s.ss):
        seg.selector, seg.dpl = 0x10 | 3, 3
    m.vcpu.set_sregs(s)
    return m


def _run(m: Machine, code: bytes, regs: dict, data: bytes):
    m.write_phys(CODE, code)
    m.write_phys(DATA, data)
    v = m.vcpu
    v.set_regs(**regs)
    t = threading.Timer(5.0, v.kick)
    t.daemon = True
    t.start()
    try:
        ex = v.run()
        reason = getattr(ex.reason, "name", str(ex.reason))
        if ex.reason == ExitReason.IO:
            v.immediate_exit = 1
            try:
                v.run()
            finally:
                v.immediate_exit = 0
    finally:
        t.cancel()
    out = regs_dict(v.get_regs())
    out["rflags"] &= FLAGS
    return reason, out, m.read_phys(DATA, 0x1000)


@pytest.fixture(scope="module")
def machines():
    difftools.require_both()
    if not difftools.is_pvm() and difftools.host_flavour() == "unknown":
        pytest.skip("CPL3 code is an instruction oracle only where /dev/kvm runs it on the CPU "
                    "(PVM, VMX, SVM); this host's KVM vendor module is unknown")
    ms = {b: _user_machine(b) for b in ("hw", "sim")}
    yield ms
    for m in ms.values():
        m.close()


def test_random_cpl3_programs_give_the_same_state_on_sim_and_hw(machines):
    print("seed", BASE_SEED)
    failures, ran = [], 0
    for i in range(N_PROGRAMS):
        seed = BASE_SEED + i
        g = Gen(seed, 64)
        body = [t for t, _ in g.program(g.r.randrange(3, 25))]
        text = ".code64\n_start:\n" + "\n".join(body) + "\nout 0x80, al\n"
        code = asm.assemble(text, base=CODE).code
        rng = random.Random(seed)
        regs = {n: rng.getrandbits(64) for n in REG_NAMES[:16]}
        regs.update(rsp=STACK, rbp=DATA, rip=CODE,
                    rflags=2 | IOPL3 | rng.choice([0, FLAGS, rng.getrandbits(12) & FLAGS]))
        data = bytes(rng.getrandbits(8) for _ in range(0x1000))
        got = {b: _run(m, code, regs, data) for b, m in machines.items()}
        ran += 1
        hw, sim = got["hw"], got["sim"]
        if hw[0] != "IO":
            continue                      # e.g. #DE from a division: not a straight-line result
        lines = difftools.diff({"exit": hw[0], "regs": hw[1]}, {"exit": sim[0], "regs": sim[1]})
        if hw[2] != sim[2]:
            lines.append("data page differs")
        if lines:
            failures.append(f"seed {seed} (KVMLAB_CPL3_SEED={seed} KVMLAB_CPL3_PROGRAMS=1):\n    "
                            + "\n    ".join(body) + "\n  " + "\n  ".join(lines))
    assert not failures, f"{len(failures)}/{ran} programs differ (base seed {BASE_SEED}):\n" + \
        "\n".join(failures[:8])


def test_failed_32_bit_cmpxchg_keeps_the_upper_half_of_a_register_destination(machines):
    code = asm.assemble(".code64\n_start:\ncmpxchg edi, ecx\nout 0x80, al\n", base=CODE).code
    regs = dict(rax=0x5555555522222222, rdi=0xAAAAAAAA11111111, rcx=0xCCCCCCCC33333333, rsp=STACK,
                rbp=DATA, rip=CODE, rflags=2 | IOPL3)
    hw, sim = (_run(machines[b], code, regs, bytes(0x1000))[1] for b in ("hw", "sim"))
    assert hex(hw["rdi"]) == hex(sim["rdi"])
