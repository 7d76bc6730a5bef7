"""Tests for kvmlab.asm: the in-process guest assembler and the disassembler."""

import shutil
import subprocess
import textwrap

import pytest

from kvmlab.asm import AsmError, Insn, Program, assemble, assemble_file, disassemble


def asm(src, **kw):
    return assemble(textwrap.dedent(src), **kw)


def code16(src, **kw):
    return asm(".intel_syntax noprefix\n.code16\n" + textwrap.dedent(src), **kw).code


def code32(src, **kw):
    return asm(".intel_syntax noprefix\n.code32\n" + textwrap.dedent(src), **kw).code


def code64(src, **kw):
    return asm(".intel_syntax noprefix\n.code64\n" + textwrap.dedent(src), **kw).code


# --- encodings in each mode -------------------------------------------------

def test_real_mode_instructions_encode_as_16_bit_code():
    assert code16("out dx, al") == b"\xee"  # out dx, al
    assert code16("mov ax, 0x10") == b"\xb8\x10\x00"  # mov ax, 0x10
    assert code16("mov eax, 1") == b"\x66\xb8\x01\x00\x00\x00"  # mov eax, 1
    assert code16("mov al, [bx+si+4]") == b"\x8a\x40\x04"  # mov al, [bx+si+4]
    assert code16("ret") == b"\xc3"  # ret
    assert code16("retf") == b"\xcb"  # retf
    assert code16("ret 4") == b"\xc2\x04\x00"  # ret 4
    assert code16("iret") == b"\xcf"  # iret


def test_push_immediate_keeps_its_operand_size_in_every_mode():
    assert code16("push 0x12") == b"\x6a\x12"  # push 0x12
    assert code16("push 0x1234") == b"\x68\x34\x12"  # push 0x1234
    assert code16("push dword ptr 0x1234") == b"\x66\x68\x34\x12\x00\x00"  # push dword 0x1234
    assert code32("push word ptr 0x1234") == b"\x66\x68\x34\x12"  # push word 0x1234
    assert code32("push 0x1234") == b"\x68\x34\x12\x00\x00"  # push 0x1234
    assert code64("push 0x12") == b"\x6a\x12"  # push 0x12


def test_protected_mode_instructions_encode_as_32_bit_code():
    assert code32("mov eax, cr0") == b"\x0f\x20\xc0"  # mov eax, cr0
    assert code32("mov ds, ax") == b"\x8e\xd8"  # mov ds, ax
    assert code32("push ds") == b"\x1e"  # push ds
    assert code32("iret") == b"\xcf"  # iretd
    assert code32("mov dword ptr [0xb8000], 0x0f41") == (
        b"\xc7\x05\x00\x80\x0b\x00\x41\x0f\x00\x00")  # mov dword ptr [0xb8000], 0xf41


def test_long_mode_absolute_memory_operands_are_not_rip_relative():
    assert code64("mov eax, [0x2000]") == b"\x8b\x04\x25\x00\x20\x00\x00"  # mov eax, [0x2000]
    assert code64("mov [0x2000], al") == b"\x88\x04\x25\x00\x20\x00\x00"  # mov [0x2000], al
    assert code64("lea rax, [0x2000]") == b"\x48\x8d\x04\x25\x00\x20\x00\x00"  # lea rax, [0x2000]
    assert code64("lgdt [0x2000]") == b"\x0f\x01\x14\x25\x00\x20\x00\x00"  # lgdt [0x2000]


def test_long_mode_rip_relative_label_is_relative_to_the_next_instruction():
    p = asm("""
        .intel_syntax noprefix
        .code64
        lea rax, [rip + msg]   # 7 bytes
        msg: .byte 1
    """, base=0x1000)
    assert p.code[:7] == b"\x48\x8d\x05\x00\x00\x00\x00"  # lea rax, [rip + 0]
    assert code64("mov rsi, qword ptr [rip + 16]") == b"\x48\x8b\x35\x10\x00\x00\x00"  # mov rsi, [rip+0x10]


def test_long_mode_movabs_and_iretq():
    assert code64("mov rax, 0x1122334455667788") == (
        b"\x48\xb8\x88\x77\x66\x55\x44\x33\x22\x11")  # movabs rax, 0x1122334455667788
    assert code64("iretq") == b"\x48\xcf"  # iretq


# --- labels, branches, mode switches ----------------------------------------

def test_short_and_near_branches_are_chosen_by_distance():
    p = asm("""
        .intel_syntax noprefix
        .code16
        start: jmp near_target
        .fill 10, 1, 0x90
        near_target: jmp far_target
        .fill 300, 1, 0x90
        far_target: jne start
    """, base=0x1000)
    assert p.code[:2] == b"\xeb\x0a"  # jmp short near_target
    assert p.code[12:15] == b"\xe9\x2c\x01"  # jmp near far_target (rel16)
    end = len(p.code)
    assert p.code[end - 4:] == bytes([0x0f, 0x85]) + ((0x1000 - (0x1000 + end)) & 0xFFFF).to_bytes(2, "little")  # jne start


def test_forward_and_backward_labels_resolve_across_code_switches():
    p = asm("""
        .intel_syntax noprefix
        .code16
        _start:
            jmp 0x08:pm32        # far jump forward into 32-bit code
        back16:
            hlt
        .code32
        pm32:
            jmp 0x18:lm64
        .code64
        lm64:
            mov rax, offset back16
            jmp lm64
    """, base=0x1000)
    s = p.symbols
    assert s["_start"] == 0x1000 and p.entry == 0x1000
    assert p.code[:5] == b"\xea" + s["pm32"].to_bytes(2, "little") + b"\x08\x00"  # ljmp 0x08:pm32
    off = s["pm32"] - 0x1000
    assert p.code[off:off + 7] == b"\xea" + s["lm64"].to_bytes(4, "little") + b"\x18\x00"  # ljmp 0x18:lm64
    assert [i.mnemonic for i in p.disassemble("lm64")] == ["mov", "jmp"]
    assert p.bits_at(s["_start"]) == 16 and p.bits_at(s["pm32"]) == 32 and p.bits_at(s["lm64"]) == 64


def test_local_numeric_labels_refer_to_the_nearest_definition():
    b = code16("""
        1:  inc ax
            jz 1f
            jmp 1b
        1:  hlt
            jmp 1b
    """)
    assert b == (b"\x40"  # inc ax
                 b"\x74\x02"  # jz +2
                 b"\xeb\xfb"  # jmp -5
                 b"\xf4"  # hlt
                 b"\xeb\xfd")  # jmp -3


def test_bare_label_operands_are_memory_and_offset_gives_the_address():
    p = asm("""
        .intel_syntax noprefix
        .code16
        mov ax, msg
        mov ax, offset msg
        msg: .word 7
    """, base=0x1000)
    assert p.code[:3] == b"\xa1\x06\x10"  # mov ax, [0x1006]
    assert p.code[3:6] == b"\xb8\x06\x10"  # mov ax, 0x1006


def test_equ_set_and_assignment_define_constants():
    p = asm("""
        .intel_syntax noprefix
        .code32
        .equ PORT, 0x3f8
        .set TWICE, PORT * 2
        MASK = 1 << 4 | 1
        mov dx, PORT
        mov eax, TWICE
        mov ecx, MASK
    """)
    assert p.symbols["PORT"] == 0x3F8 and p.symbols["TWICE"] == 0x7F0 and p.symbols["MASK"] == 0x11
    assert p.code == (b"\x66\xba\xf8\x03"  # mov dx, 0x3f8
                      b"\xb8\xf0\x07\x00\x00"  # mov eax, 0x7f0
                      b"\xb9\x11\x00\x00\x00")  # mov ecx, 0x11


# --- data directives -----------------------------------------------------------

def test_data_directives_lay_out_little_endian_values_and_label_references():
    p = asm("""
        .byte 1, 2, 'A', -1
        .word 0x1234
        .short 5
        .long table
        .int 6
        .quad 0x1122334455667788
        table: .ascii "ab"
        .asciz "c\\n"
        .string "d"
        .2byte 0, table - 0x1000
    """, base=0x1000)
    assert p.code == (bytes([1, 2, 0x41, 0xFF]) + b"\x34\x12" + b"\x05\x00"
                      + (0x1000 + 24).to_bytes(4, "little") + b"\x06\x00\x00\x00"
                      + bytes.fromhex("8877665544332211") + b"ab" + b"c\n\x00" + b"d\x00"
                      + b"\x00\x00" + (24).to_bytes(2, "little"))
    assert p.symbols["table"] == 0x1018


def test_org_pads_to_an_address_and_align_fill_space_pad_as_asked():
    p = asm("""
        .byte 1
        .org 4
        .byte 2
        .align 4, 0xcc
        .balign 2
        .p2align 3, 0
        .fill 2, 2, 0xabcd
        .space 3, 0xee
        .skip 1
        .org 0x16, 0x55
        end:
    """, base=0x1000)
    assert p.code == (b"\x01\x00\x00\x00\x02\xcc\xcc\xcc" + b"\xcd\xab\xcd\xab"
                      + b"\xee\xee\xee\x00" + b"\x55" * 6)
    assert p.symbols["end"] == 0x1016


def test_org_takes_offsets_from_the_start_or_label_addresses():
    p = asm(".byte 1\n.org 510\n.word 0xaa55\nx:\n.org x + 2, 0xff\n", base=0x7c00)
    assert len(p.code) == 514 and p.code[510:] == b"\x55\xaa\xff\xff"


def test_org_backwards_is_an_error():
    with pytest.raises(AsmError, match=r"g.S:3: .*backwards"):
        assemble(".space 8\nx:\n.org 4\n", filename="g.S")


def test_comments_in_all_styles_are_ignored():
    b = code16("""
        # hash comment
        nop ; semicolon comment
        nop // slash comment
        /* block
           comment */ nop
        .ascii "#;//"   # not a comment inside a string
    """)
    assert b == b"\x90\x90\x90#;//"  # nop; nop; nop; "#;//"


def test_directives_for_sections_and_globals_are_accepted():
    p = asm("""
        .intel_syntax noprefix
        .global _start
        .globl other
        .text
        .section .text
        .code16
        other: nop
        _start: hlt
    """, base=0x2000)
    assert p.entry == 0x2001 and p.code == b"\x90\xf4"  # nop; hlt


# --- symbols, lines, modes, headers ------------------------------------------------

def test_program_records_symbols_lines_and_mode():
    p = asm("""\
        .intel_syntax noprefix
        .code32
        _start:
            mov eax, 1
        loop_top:
            dec eax
            jnz loop_top
    """, base=0x1000)
    assert isinstance(p, Program)
    assert p.mode == "protected" and p.base == 0x1000
    assert p.symbols == {"_start": 0x1000, "loop_top": 0x1005}
    assert p.lines == {0x1000: 4, 0x1005: 6, 0x1006: 7}
    assert p.address_of_line(6) == 0x1005


def test_mode_and_load_header_set_mode_and_base(tmp_path):
    f = tmp_path / "guest.S"
    f.write_text("# kvmlab: mode=long\n# kvmlab: load=0x8000\n"
                 ".intel_syntax noprefix\n.code16\nstart: hlt\n")
    p = assemble_file(f)
    assert p.mode == "long" and p.base == 0x8000 and p.symbols["start"] == 0x8000
    g = tmp_path / "plain.S"
    g.write_text(".intel_syntax noprefix\n.code64\nhlt\n")
    p = assemble_file(g)
    assert p.mode == "long" and p.base == 0x1000 and p.entry == 0x1000
    assert assemble_file(g, base=0x4000).base == 0x4000


def test_header_mode_sets_the_initial_bitness():
    p = assemble("# kvmlab: mode=protected\nmov eax, 1\n")
    assert p.mode == "protected" and p.code == b"\xb8\x01\x00\x00\x00"  # mov eax, 1
    assert assemble("nop\n").mode == "real"


# --- errors ---------------------------------------------------------------------------

def test_errors_name_file_line_and_source_line():
    src = ".intel_syntax noprefix\n.code16\nnop\nmov ax, bogus_reg_xyz\n"
    with pytest.raises(AsmError) as e:
        assemble(src, filename="hello.S")
    assert str(e.value).startswith("hello.S:4: undefined symbol 'bogus_reg_xyz'")
    assert "mov ax, bogus_reg_xyz" in str(e.value)
    assert e.value.line == 4 and e.value.filename == "hello.S"


def test_keystone_errors_carry_file_and_line():
    with pytest.raises(AsmError, match=r"^hello.S:2: invalid mnemonic"):
        assemble(".code32\nfrobnicate eax\n", filename="hello.S")
    with pytest.raises(AsmError, match=r"^hello.S:3: invalid operand"):
        assemble(".intel_syntax noprefix\n.code32\nmov al, bx\n", filename="hello.S")
    with pytest.raises(AsmError, match=r"^hello.S:3: .*not valid in 64-bit code"):
        assemble(".intel_syntax noprefix\n.code64\nmov eax, cr0\n", filename="hello.S")


def test_misc_errors_are_reported():
    with pytest.raises(AsmError, match=r"g.S:2: symbol 'a' is already defined"):
        assemble("a:\na:\n", filename="g.S")
    with pytest.raises(AsmError, match=r"g.S:1: unsupported directive .macro"):
        assemble(".macro foo\n", filename="g.S")
    with pytest.raises(AsmError, match=r"does not fit"):
        assemble(".byte 300\n")
    with pytest.raises(AsmError, match=r"out of range"):
        assemble(".code16\nx: loop y\n.space 200\ny: nop\n")
    with pytest.raises(AsmError, match=r"AT&T"):
        assemble(".att_syntax\n")
    with pytest.raises(AsmError, match=r"1b"):
        assemble(".code16\njmp 1b\n")


# --- disassembly ------------------------------------------------------------------------

def test_disassemble_returns_intel_syntax_instructions():
    insns = disassemble(b"\xba\xf8\x03\xee\xf4", 0x1000, 16)  # mov dx, 0x3f8; out dx, al; hlt
    assert [str(i) for i in insns] == ["0x1000: mov dx, 0x3f8", "0x1003: out dx, al", "0x1004: hlt"]
    assert insns[1] == Insn(0x1003, 1, b"\xee", "out", "dx, al")
    assert len(disassemble(b"\x90" * 10, 0, 32, count=3)) == 3


def test_disassembly_round_trips_through_the_assembler():
    src = """
        .intel_syntax noprefix
        .code64
        mov rax, 0x1234
        add rbx, rcx
        mov dword ptr [rdi + 8], eax
        push r12
        syscall
        hlt
    """
    p = asm(src, base=0x400)
    text = [f"{i.mnemonic} {i.op_str}" for i in p.disassemble()]
    again = assemble(".intel_syntax noprefix\n.code64\n" + "\n".join(text), base=0x400)
    assert again.code == p.code
    assert p.disassemble(0x400, count=2)[1].mnemonic == "add"


def test_program_disassembly_skips_data_and_uses_each_ranges_bitness():
    p = asm("""
        .intel_syntax noprefix
        .code16
        mov ax, 1
        msg: .ascii "xyz"
        .code32
        mov eax, 1
    """, base=0x1000)
    assert [str(i) for i in p.disassemble()] == ["0x1000: mov ax, 1", "0x1006: mov eax, 1"]


# --- comparison with GNU as -----------------------------------------------------------

GAS_SNIPPETS = {
    "real_mode_boot": """
        .intel_syntax noprefix
        COUNT = 10
        .code16
        _start:
            cli
            xor ax, ax
            mov ds, ax
            mov sp, 0x7c00
            mov si, offset msg
        1:  lodsb
            test al, al
            jz 2f
            mov dx, 0x3f8
            out dx, al
            jmp 1b
        2:  push 0x12
            push 0x1234
            push dword ptr 0x1234
            push offset msg
            mov eax, msg
            lea si, [bx+msg]
            mov byte ptr [msg+1], 'A'
            mov cx, COUNT
            loop 2b
            call sub
            ret
            retf
            iret
            lgdt [gdtr]
            mov eax, cr0
            or al, 1
            mov cr0, eax
            jmp 0x08:pm
        sub: ret 2
        .fill 200, 1, 0x90
            jne sub
        msg: .asciz "hi\\n"
        gdtr: .word gdt_end - gdt - 1
              .long gdt
        .align 8, 0
        gdt: .quad 0, 0x00cf9a000000ffff
        gdt_end:
        .code32
        pm: mov ax, 0x10
            mov ds, ax
            push ds
            push word ptr 0x1234
            mov eax, [msg]
            lea eax, [ebx+msg]
            iret
            jecxz pm
            call pm
            jmp pm
    """,
    "long_mode": """
        .intel_syntax noprefix
        .code64
        lm: mov rax, 0x1122334455667788
            mov eax, [0x2000]
            mov al, [msg]
            mov [msg], al
            mov rax, [msg]
            lea rax, [msg]
            lea rax, [rip+msg]
            mov rax, offset msg
            lgdt [lm]
            push 0x1234
            mov dword ptr [0xb8000], 0x0f41
            mov rsi, qword ptr [rip + 16]
            inc dword ptr [msg]
            jmp qword ptr [msg]
            call lm
            jrcxz lm
            iretq
            mov ds, ax
            push fs
            hlt
            jmp lm
        msg: .quad lm, msg - lm
    """,
    "data": """
        .byte 1, 2, 'A', -1
        .word 0x1234, d
        .long d, 5
        .quad 0x1122334455667788
        d: .ascii "ab"
        .asciz "c\\t"
        .org 0x40
        .fill 3, 2, 0xabcd
        .space 5, 0xee
        .p2align 4, 0
        .equ E, . - d
        .byte E
    """,
}


def gnu_as(src, base, tmp_path):
    s, o, b = tmp_path / "t.S", tmp_path / "t.o", tmp_path / "t.bin"
    s.write_text(src)
    subprocess.run(["as", "--64", "-o", str(o), str(s)], check=True, capture_output=True)
    subprocess.run(["ld", "-m", "elf_x86_64", f"-Ttext={base:#x}", "-e", "0",
                    "--oformat=binary", "-o", str(b), str(o)], check=True, capture_output=True)
    return b.read_bytes()


@pytest.mark.skipif(not (shutil.which("as") and shutil.which("ld")),
                    reason="GNU as/ld (binutils) are not installed")
@pytest.mark.parametrize("name", sorted(GAS_SNIPPETS))
def test_output_matches_gnu_as_byte_for_byte(name, tmp_path):
    src = textwrap.dedent(GAS_SNIPPETS[name])
    try:
        expected = gnu_as(src, 0x1000, tmp_path)
    except subprocess.CalledProcessError as e:  # e.g. a binutils without x86-64 support
        pytest.skip(f"GNU as/ld failed: {e.stderr.decode(errors='replace')[:200]}")
    got = assemble(src, base=0x1000).code
    if got != expected:
        diff = next(i for i, (a, b) in enumerate(zip(got + b"\0", expected + b"\0")) if a != b)
        pytest.fail(f"{name}: differs from GNU as at offset {diff:#x}: "
                    f"{got[diff:diff + 8].hex()} != {expected[diff:diff + 8].hex()}")
