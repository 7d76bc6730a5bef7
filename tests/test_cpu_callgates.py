"""Far CALL/JMP through call gates on the simulated CPU (32-bit gates in protected mode,
64-bit gates in long mode), with the stack switch of a CALL to a more privileged level and
RETF back.  /dev/kvm here cannot serve as the reference (reference §19: its instruction
emulator, which runs CPL 0 and 32-bit code here, has no call gates; a CPL 3 far call through
a gate gets #UD), so the expectations are the Intel SDM's (CALL/JMP pseudocode)."""
import os
import struct
import sys

import pytest

import kvmlab
from kvmlab.asm import assemble

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "facts"))
import cpl3  # noqa: E402
from factkit import run_until, warm_up  # noqa: E402

GATE_SEL = 0x38
TARGET = 0x6000
GP, NP, UD = 13, 11, 6


@pytest.fixture(scope="module")
def kvm():
    try:
        k = kvmlab.open("sim")
    except kvmlab.BackendUnavailable as e:
        pytest.skip(str(e))
    warm_up(k)                      # load (or compile) the core outside the 2 s watchdogs
    yield k
    k.close()


def gate64(target_sel, off, dpl=3, present=True, type_=0xC):
    return struct.pack("<HHBBHII", off & 0xFFFF, target_sel, 0, (0x80 if present else 0) | (dpl << 5) | type_,
                       (off >> 16) & 0xFFFF, off >> 32, 0)


FAR_CALL = ".byte 0xff, 0x1c, 0x25\n .long 0x1800"        # call far [0x1800] (m16:32)
FAR_JMP = ".byte 0xff, 0x2c, 0x25\n .long 0x1800"         # jmp far [0x1800]
TARGET64 = """
    mov r8, rsp
    mov r9, [rsp]
    mov r10, [rsp + 8]
    mov rbx, [rsp + 16]
    mov rcx, [rsp + 24]
    mov edx, cs
    mov eax, ss
    .byte 0x48, 0xcb                  # retfq
"""


def _long(kvm, src, gate, *, cpl=3, target=TARGET64):
    vm = kvm.create_vm()
    g = cpl3.Cpl3Guest(vm, src, cpl=cpl, gdt_extra=gate)
    g.mem.write(0x1800, struct.pack("<IH", 0, GATE_SEL | cpl))
    g.mem.write(TARGET, assemble(".code64\n" + target, base=TARGET).code)
    exits = g.run()
    assert exits[-1] == ("HLT",), exits
    return vm, g


def test_a_64_bit_call_gate_from_cpl3_switches_to_rsp0_with_a_null_ss_and_retfq_returns(kvm):
    src = f"{FAR_CALL}\nback: mov esi, cs\n ud2"
    vm, g = _long(kvm, src, gate64(0x08, TARGET))
    with vm:
        r = g.vcpu.get_regs()
        assert (r.r8, r.r9, r.r10, r.rbx, r.rcx) == (cpl3.KERNEL_STACK - 32, g.sym("back"), 0x1B,
                                                     cpl3.USER_STACK, 0x23)
        assert (r.rdx, r.rax) == (0x08, 0)                # CPL 0, SS null (RPL 0)
        assert (g.outcome()[0], r.rsi, r.rsp) == (UD, 0x1B, cpl3.KERNEL_STACK - 40)  # #UD frame
        assert g.outcome()[3] == g.sym("back") + 2       # ud2 after the return, at CPL 3


def test_a_64_bit_call_gate_at_the_same_privilege_pushes_cs_and_rip_only(kvm):
    src = f"{FAR_CALL}\nback: ud2"
    target = "mov r8, rsp\n mov r9, [rsp]\n mov r10, [rsp + 8]\n .byte 0x48, 0xcb"
    vm, g = _long(kvm, src, gate64(0x08, TARGET, dpl=0), cpl=0, target=target)
    with vm:
        r = g.vcpu.get_regs()
        assert (r.r8, r.r9, r.r10) == (cpl3.USER_STACK - 16, g.sym("back"), 0x08)
        assert g.outcome()[0] == UD


@pytest.mark.parametrize("what,gate,want", [
    ("gate-dpl-below-cpl", gate64(0x08, TARGET, dpl=0), (GP, GATE_SEL)),
    ("gate-not-present", gate64(0x08, TARGET, present=False), (NP, GATE_SEL)),
    ("16-bit-gate-in-long-mode", gate64(0x08, TARGET, type_=4), (GP, GATE_SEL)),
    ("target-is-data", gate64(0x10, TARGET), (GP, 0x10)),
    ("target-null", gate64(0, TARGET), (GP, 0)),
])
def test_call_gate_checks(kvm, what, gate, want):
    vm, g = _long(kvm, f"call_: {FAR_CALL}\n ud2", gate)
    with vm:
        vec, err, _, rip, _ = g.outcome()
        assert (vec, err, rip) == want + (g.sym("call_"),)


def test_a_far_jmp_through_a_gate_cannot_raise_privilege(kvm):
    vm, g = _long(kvm, f"jmp_: {FAR_JMP}\n ud2", gate64(0x08, TARGET))
    with vm:
        vec, err, _, rip, _ = g.outcome()
        assert (vec, err, rip) == (GP, 0x08, g.sym("jmp_"))


def test_a_far_jmp_through_a_gate_to_the_same_level(kvm):
    vm, g = _long(kvm, f"{FAR_JMP}\n ud2", gate64(0x18 | 3, TARGET), target="mov r8, rsp\n ud2")
    with vm:
        r = g.vcpu.get_regs()
        assert (r.r8, g.outcome()[0], g.outcome()[3]) == (cpl3.USER_STACK, UD, TARGET + 3)


# ---- 32-bit protected mode ----------------------------------------------------------------
def _desc(base, limit, access, flags):
    return struct.pack("<HHBBBB", limit & 0xFFFF, base & 0xFFFF, (base >> 16) & 0xFF, access,
                       ((limit >> 16) & 0xF) | (flags << 4), (base >> 24) & 0xFF)


def gate32(target_sel, off, params, dpl=3, type_=0xC):
    return struct.pack("<HHBBH", off & 0xFFFF, target_sel, params, 0x80 | (dpl << 5) | type_, off >> 16)


def _protected(kvm, src, gate, target):
    vm = kvm.create_vm()
    mem = kvmlab.GuestMemory(0x200000)
    vm.set_user_memory_region(0, 0, mem)
    gdt = bytes(8) + _desc(0, 0xFFFFF, 0x9B, 0xC) + _desc(0, 0xFFFFF, 0x93, 0xC) + \
        _desc(0, 0xFFFFF, 0xFB, 0xC) + _desc(0, 0xFFFFF, 0xF3, 0xC) + _desc(0x3000, 0x67, 0x8B, 0) + gate
    mem.write(0x500, gdt)
    tss = bytearray(0x68)
    struct.pack_into("<IH", tss, 4, 0x9000, 0x10)           # ESP0, SS0
    mem.write(0x3000, bytes(tss))
    prog = assemble(".code32\n" + src, base=0x1000)
    mem.write(0x1000, prog.code)
    mem.write(0x1800, struct.pack("<IH", 0, 0x30 | 3))
    mem.write(TARGET, assemble(".code32\n" + target, base=TARGET).code)
    v = vm.create_vcpu(0)
    s = v.get_sregs()

    def seg(r, sel, type_, dpl, s_=1, base=0, limit=0xFFFFFFFF, g=1, db=1):
        r.base, r.limit, r.selector, r.type = base, limit, sel, type_
        r.present, r.dpl, r.db, r.s, r.l, r.g, r.avl, r.unusable = 1, dpl, db, s_, 0, g, 0, 0
    seg(s.cs, 0x18 | 3, 0xB, 3)
    for r in (s.ds, s.es, s.fs, s.gs, s.ss):
        seg(r, 0x20 | 3, 0x3, 3)
    seg(s.tr, 0x28, 0xB, 0, s_=0, base=0x3000, limit=0x67, g=0, db=0)
    seg(s.ldt, 0, 0x2, 0, s_=0, limit=0, g=0, db=0)
    s.ldt.present, s.ldt.unusable = 0, 1
    s.gdt.base, s.gdt.limit = 0x500, len(gdt) - 1
    s.idt.base, s.idt.limit = 0, 0
    s.cr0, s.cr4, s.efer = 0x11, 0, 0
    v.set_sregs(s)
    v.set_regs(rip=0x1000, rsp=0x8000, rflags=2 | (3 << 12))        # IOPL 3: OUT at CPL 3
    return vm, v, prog


TARGET32 = """
    mov eax, esp
    mov ebx, [esp]
    mov ecx, [esp + 4]
    mov edx, [esp + 8]
    mov esi, [esp + 12]
    mov edi, [esp + 16]
    mov ebp, [esp + 20]
    .byte 0xca, 8, 0                # retf 8
"""


def test_a_32_bit_call_gate_copies_its_parameters_to_the_ss0_esp0_stack_and_retf_pops_them(kvm):
    src = f"push 0x1111\n push 0x2222\n {FAR_CALL}\nback: out 0x80, al\n hlt"
    vm, v, prog = _protected(kvm, src, gate32(0x08, TARGET, 2), TARGET32)
    with vm:
        exits = run_until(v)
        assert exits[0][:3] == ("IO", "out", 0x80)
        r = v.get_regs()
        # the new stack: EIP, CS, the two parameters, old ESP, old SS
        assert (r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp) == (
            0x9000 - 24, prog.symbols["back"], 0x1B, 0x2222, 0x1111, 0x8000 - 8, 0x23)
        s = v.get_sregs()
        assert (s.cs.selector, s.ss.selector, r.rsp) == (0x1B, 0x23, 0x8000)


def test_a_32_bit_call_gate_without_parameters_from_cpl3(kvm):
    src = f"{FAR_CALL}\nback: out 0x80, al\n hlt"
    target = "mov eax, esp\n mov ebx, [esp + 8]\n mov ecx, ss\n .byte 0xcb"
    vm, v, prog = _protected(kvm, src, gate32(0x08, TARGET, 0), target)
    with vm:
        assert run_until(v)[0][:3] == ("IO", "out", 0x80)
        r = v.get_regs()
        assert (r.rax, r.rbx, r.rcx, r.rsp) == (0x9000 - 16, 0x8000, 0x10, 0x8000)
