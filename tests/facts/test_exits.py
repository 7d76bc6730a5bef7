"""Reference §3.3 and §8.3: which exits simple real-mode guests produce, with which fields.

Layout (reference §8.3): slot 0 RAM [0, 0x80000), slot 1 a READONLY page at 0x80000
filled with 0xAB, nothing above; code at 0x1000, cs.base 0.
"""
import errno

import pytest

import kvmlab
from factkit import describe, is_pvm, real_mode, run, run_until
import modes

IO, MMIO, HLT = kvmlab.KVM_EXIT_IO, kvmlab.KVM_EXIT_MMIO, kvmlab.KVM_EXIT_HLT


def guest(vm, src, **kw):
    kw.setdefault("ro_slot", True)
    return real_mode(vm, src, **kw)


def test_hlt_without_irqchip_exits_with_HLT_and_rip_after_the_hlt(vm):
    g = guest(vm, "_start: hlt\nafter:")
    ex = g.run()
    assert ex.reason == HLT
    assert g.regs.rip == g.sym("after")


def test_out_of_a_byte_word_and_dword_gives_one_io_exit_each_with_size_port_and_data(vm):
    g = guest(vm, """
        mov dx, 0x3f8
        mov al, 0x41
        out dx, al
        mov ax, 0x4243
        mov dx, 0x3fa
        out dx, ax
        mov eax, 0x44454647
        mov dx, 0x3fc
        out dx, eax
        out 0x80, al
        hlt""")
    exits = []

    def check(ex):
        if ex.reason == IO:
            assert ex.data_offset == 4096
            assert ex.direction == kvmlab.exits.KVM_EXIT_IO_OUT
    got = g.run_until(on_exit=check)
    assert got == [("IO", "out", 0x3F8, 1, 1, b"A"), ("IO", "out", 0x3FA, 2, 1, b"CB"),
                   ("IO", "out", 0x3FC, 4, 1, b"GFED"), ("IO", "out", 0x80, 1, 1, b"G"), ("HLT",)]


def test_in_exits_with_direction_0_and_the_value_the_vmm_supplies_lands_in_al_ax_eax(vm):
    g = guest(vm, """
        mov dx, 0x60
        in al, dx
        mov bl, al
        in ax, dx
        mov cx, ax
        in eax, dx
        mov esi, eax
        hlt""")
    got = g.run_until(in_value=lambda ex: int.from_bytes(b"\x5a" * ex.size, "little"))
    assert got == [("IO", "in", 0x60, 1, 1, None), ("IO", "in", 0x60, 2, 1, None),
                   ("IO", "in", 0x60, 4, 1, None), ("HLT",)]
    r = g.regs
    assert (r.rbx & 0xFF, r.rcx & 0xFFFF, r.rsi & 0xFFFFFFFF) == (0x5A, 0x5A5A, 0x5A5A5A5A)


@pytest.mark.parametrize("insn,size", [("rep outsb", 1), ("rep outsw", 2)])
def test_rep_outs_exits_once_per_element_with_count_1(vm, insn, size):
    g = guest(vm, f"""
        mov si, 0x2000
        mov cx, 16
        mov dx, 0x3f8
        cld
        {insn}
        hlt""")
    g.mem.write(0x2000, bytes(range(1, 33)))
    got = g.run_until()
    assert got[-1] == ("HLT",)
    ios = got[:-1]
    assert [e[4] for e in ios] == [1] * 16
    assert b"".join(e[5] for e in ios) == bytes(range(1, 1 + 16 * size))


def test_rep_outs_decrements_rcx_by_one_per_exit(vm):
    g = guest(vm, """
        mov si, 0x2000
        mov cx, 4
        mov dx, 0x3f8
        rep outsb
        hlt""")
    seen = []
    for _ in range(4):
        ex = g.run()
        assert ex.reason == IO and ex.count == 1
        seen.append(g.regs.rcx & 0xFFFF)
    # the OUT of element i is pending at its exit; rcx reaches 0 once the last one completes
    assert seen in ([3, 2, 1, 0], [4, 3, 2, 1])
    assert g.run().reason == HLT and g.regs.rcx & 0xFFFF == 0


def test_outsb_without_rep_exits_with_count_1(vm):
    g = guest(vm, "mov si, 0x2000\n mov dx, 0x3f8\n outsb\n hlt")
    assert g.run_until() == [("IO", "out", 0x3F8, 1, 1, b"\0"), ("HLT",)]


@pytest.mark.parametrize("src,counts", [
    ("mov di, 0x3ff0\n mov cx, 5000\n mov dx, 0x60\n cld\n rep insb", (1, [16, 1024, 1024, 1024, 1024, 888])),
    ("mov di, 0x4000\n mov cx, 5000\n mov dx, 0x60\n cld\n rep insw", (2, [512] * 9 + [392])),
    ("mov di, 0x4ffc\n mov cx, 100\n mov dx, 0x60\n std\n rep insd\n cld", (4, [100])),
], ids=["insb-page-split", "insw", "insd-df1"])
def test_rep_ins_batches_up_to_the_page_boundary_and_1024_bytes_per_exit(vm, src, counts):
    g = guest(vm, src + "\n hlt")
    size, expected = counts
    got = g.run_until(in_value=lambda ex: bytes([0x77]) * (ex.size * ex.count))
    assert got[-1] == ("HLT",)
    assert [e[3] for e in got[:-1]] == [size] * len(expected)
    assert [e[4] for e in got[:-1]] == expected


def test_rep_insb_stores_what_the_vmm_supplied_for_every_element(vm):
    g = guest(vm, "mov di, 0x3000\n mov cx, 8\n mov dx, 0x60\n cld\n rep insb\n hlt")
    got = g.run_until(in_value=lambda ex: bytes(range(0x70, 0x70 + ex.count)))
    assert got == [("IO", "in", 0x60, 1, 8, None), ("HLT",)]
    assert g.mem.read(0x3000, 8) == bytes(range(0x70, 0x78))


def test_mmio_writes_of_1_2_4_bytes_exit_with_len_and_little_endian_data(vm):
    g = guest(vm, """
        mov ax, 0x9000
        mov es, ax
        mov byte ptr es:[0x10], 0x11
        mov word ptr es:[0x20], 0x2233
        mov dword ptr es:[0x30], 0x44556677
        hlt""")
    assert g.run_until() == [("MMIO", "write", 0x90010, 1, b"\x11"), ("MMIO", "write", 0x90020, 2, b"\x33\x22"),
                             ("MMIO", "write", 0x90030, 4, b"\x77\x66\x55\x44"), ("HLT",)]


def test_an_8_byte_mmio_write_exits_once_with_len_8(vm):
    # 64-bit store: long mode, identity map
    mem = kvmlab.GuestMemory(0x400000)
    vm.set_user_memory_region(0, 0, mem)
    cr3 = modes.build_identity_map(mem, gib=1)
    from kvmlab.asm import assemble
    prog = assemble(".code64\n mov rax, 0x1122334455667788\n mov [0x500000], rax\n hlt", base=0x1000)
    mem.write(0x1000, prog.code)
    vcpu = vm.create_vcpu(0)
    modes.set_long_mode(vcpu, mem, 0x1000, cr3)
    got = run_until(vcpu)
    assert got == [("MMIO", "write", 0x500000, 8, (0x1122334455667788).to_bytes(8, "little")), ("HLT",)]


def test_mmio_reads_exit_and_kvm_zero_extends_or_merges_the_value_the_vmm_supplies(vm):
    g = guest(vm, """
        mov ax, 0x9000
        mov es, ax
        mov ebx, 0xffffffff
        mov bl, es:[0x10]
        mov cx, es:[0x20]
        mov edx, es:[0x30]
        movzx esi, byte ptr es:[0x40]
        hlt""")
    got = g.run_until(mmio_value=lambda ex: bytes(range(0xC1, 0xC1 + ex.len)))
    assert got == [("MMIO", "read", 0x90010, 1, None), ("MMIO", "read", 0x90020, 2, None),
                   ("MMIO", "read", 0x90030, 4, None), ("MMIO", "read", 0x90040, 1, None), ("HLT",)]
    r = g.regs
    assert r.rbx & 0xFFFFFFFF == 0xFFFFFFC1
    assert r.rcx & 0xFFFF == 0xC2C1
    assert r.rdx & 0xFFFFFFFF == 0xC4C3C2C1
    assert r.rsi & 0xFFFFFFFF == 0xC1


def test_a_dword_write_crossing_a_page_into_unmapped_space_exits_twice_with_2_bytes_each(vm):
    g = guest(vm, """
        mov ax, 0x9000
        mov es, ax
        mov dword ptr es:[0xffe], 0x01020304
        hlt""")
    assert g.run_until() == [("MMIO", "write", 0x90FFE, 2, b"\x04\x03"), ("MMIO", "write", 0x91000, 2, b"\x02\x01"),
                             ("HLT",)]


def test_a_write_straddling_ram_and_a_readonly_slot_writes_the_ram_part_and_exits_for_the_rest(vm):
    g = guest(vm, """
        mov ax, 0x7fff
        mov es, ax
        mov dword ptr es:[0xe], 0x01020304
        hlt""")
    assert g.run_until() == [("MMIO", "write", 0x80000, 2, b"\x02\x01"), ("HLT",)]
    assert g.mem.read(0x7FFFE, 2) == b"\x04\x03"
    assert g.ro.read(0, 2) == b"\xab\xab"


def test_read_modify_write_on_mmio_gives_a_read_exit_then_a_write_exit_with_the_result(vm):
    g = guest(vm, """
        mov ax, 0x9000
        mov es, ax
        add byte ptr es:[0x10], 5
        hlt""")
    assert g.run_until(mmio_value=0x10) == [("MMIO", "read", 0x90010, 1, None),
                                            ("MMIO", "write", 0x90010, 1, b"\x15"), ("HLT",)]


def test_xchg_with_mmio_reads_then_writes_the_register(vm):
    g = guest(vm, """
        mov ax, 0x9000
        mov es, ax
        mov al, 0x44
        xchg es:[0x10], al
        hlt""")
    assert g.run_until(mmio_value=0x33) == [("MMIO", "read", 0x90010, 1, None),
                                            ("MMIO", "write", 0x90010, 1, b"\x44"), ("HLT",)]
    assert g.regs.rax & 0xFF == 0x33


def test_rep_movsb_from_ram_to_mmio_exits_once_per_element(vm):
    g = guest(vm, """
        mov ax, 0x9000
        mov es, ax
        mov si, 0x2000
        mov di, 0x100
        mov cx, 4
        cld
        rep movsb
        hlt""")
    g.mem.write(0x2000, b"wxyz")
    assert g.run_until() == [("MMIO", "write", 0x90100 + i, 1, bytes([c])) for i, c in enumerate(b"wxyz")] + [("HLT",)]


def test_rep_stosd_to_mmio_exits_once_per_element(vm):
    g = guest(vm, """
        mov ax, 0x9000
        mov es, ax
        mov di, 0x100
        mov cx, 3
        mov eax, 0xdeadbeef
        cld
        rep stosd
        hlt""")
    v = (0xDEADBEEF).to_bytes(4, "little")
    assert g.run_until() == [("MMIO", "write", 0x90100 + 4 * i, 4, v) for i in range(3)] + [("HLT",)]


def test_reads_from_a_readonly_slot_do_not_exit_and_writes_exit_as_mmio_without_changing_memory(vm):
    g = guest(vm, """
        mov ax, 0x8000
        mov es, ax
        mov bl, es:[0x10]
        mov byte ptr es:[0x10], 0x99
        mov bh, es:[0x10]
        hlt""")
    assert g.run_until() == [("MMIO", "write", 0x80010, 1, b"\x99"), ("HLT",)]
    assert g.regs.rbx & 0xFFFF == 0xABAB
    assert g.ro.read(0x10, 1) == b"\xab"


def test_instruction_fetch_from_a_readonly_slot_runs_without_exits(vm):
    g = guest(vm, "jmp 0x8000:0x0000")
    g.ro.write(0, bytes([0xB0, 0x5A, 0xE6, 0x80, 0xF4]))     # mov al, 0x5a; out 0x80, al; hlt
    assert g.run_until() == [("IO", "out", 0x80, 1, 1, b"\x5a"), ("HLT",)]


def test_instruction_fetch_from_unmapped_memory_is_an_internal_error_with_suberror_emulation(vm):
    g = guest(vm, "jmp 0x9000:0x0000")
    ex = g.run()
    assert ex.reason == kvmlab.KVM_EXIT_INTERNAL_ERROR
    assert ex.suberror == kvmlab.KVM_INTERNAL_ERROR_EMULATION == 1


def test_a_guest_booting_from_a_bios_slot_at_0xffff0000_needs_no_set_sregs(vm):
    bios = kvmlab.GuestMemory(0x10000)
    from kvmlab.asm import assemble
    bios.write(0xFFF0, assemble(".code16\n mov al, 0x42\n out 0x80, al\n hlt", base=0xFFF0).code)
    vm.set_user_memory_region(0, 0xFFFF0000, bios)
    vcpu = vm.create_vcpu(0)
    assert run_until(vcpu) == [("IO", "out", 0x80, 1, 1, b"\x42"), ("HLT",)]


def test_a_protected_mode_triple_fault_exits_with_SHUTDOWN(kvm, vm):
    mem = kvmlab.GuestMemory(0x20000)
    vm.set_user_memory_region(0, 0, mem)
    from kvmlab.asm import assemble
    prog = assemble(".code32\n nop\n fault: ud2\n", base=0x1000)
    mem.write(0x1000, prog.code)
    vcpu = vm.create_vcpu(0)
    modes.set_protected_flat(vcpu, mem, 0x1000, idt=(0, 0))     # IDT limit 0: #UD -> #DF -> triple fault
    ex = run(vcpu)
    assert ex.reason == kvmlab.KVM_EXIT_SHUTDOWN
    if is_pvm(kvm) or kvm.backend_name == "sim" and getattr(kvm.backend, "vendor", "intel") == "intel":
        # PVM and VMX keep the state (rip on the faulting instruction) and shut down again;
        # upstream SVM INIT-resets the vCPU before reporting SHUTDOWN (reference §17 #5).
        assert vcpu.get_regs().rip == prog.symbols["fault"]
        assert run(vcpu).reason == kvmlab.KVM_EXIT_SHUTDOWN


def test_a_real_mode_triple_fault_shuts_down_upstream_but_pvm_vectors_through_the_ivt(kvm, vm):
    g = guest(vm, """
        lidt [idtr]
        int3
        hlt
    idtr: .word 0
          .long 0""", ivt_stubs=8)
    ex = g.run()
    if is_pvm(kvm):
        # [PVM] the emulator ignores the real-mode IDTR limit and delivers vector 3 via the IVT
        assert describe(ex) == ("IO", "out", 0xEE, 1, 1, b"\x03")
    else:
        assert ex.reason == kvmlab.KVM_EXIT_SHUTDOWN


def test_ud2_in_real_mode_is_delivered_through_the_ivt_without_an_exit(vm):
    g = guest(vm, "ud2\n hlt", ivt_stubs=8)
    assert g.run_until() == [("IO", "out", 0xEE, 1, 1, b"\x06"), ("HLT",)]


def test_rdtsc_does_not_exit(vm):
    g = guest(vm, "rdtsc\n hlt")
    assert g.run_until() == [("HLT",)]
    assert g.regs.rax or g.regs.rdx


def test_kvm_run_with_no_memslot_fails_with_ENOSPC_on_pvm_and_is_an_internal_error_upstream(kvm, vm):
    vcpu = vm.create_vcpu(0)
    if is_pvm(kvm):
        with pytest.raises(kvmlab.KvmError) as e:
            run(vcpu)
        assert e.value.errno == errno.ENOSPC
    else:
        assert run(vcpu).reason == kvmlab.KVM_EXIT_INTERNAL_ERROR


# ---- protected / long mode ---------------------------------------------------------------
def test_a_16_byte_sse_store_to_mmio_exits_as_two_8_byte_fragments(kvm, vm):
    mem, vcpu, prog = modes.long_guest(vm, "movups xmm0, [0x2000]\n movups [0x40000010], xmm0\n hlt",
                                       cr4=0x600, gib=2)
    mem.write(0x2000, bytes(range(0x10, 0x20)))
    if kvm.backend_name == "sim":
        # The simulated CPU implements the integer instruction set only (DESIGN §2): SSE is
        # an emulation failure with the instruction bytes, never a wrong result.
        ex = run(vcpu)
        assert (ex.reason, ex.suberror) == (kvmlab.KVM_EXIT_INTERNAL_ERROR, 1)
        assert ex.insn_bytes.startswith(bytes.fromhex("0f10"))      # movups xmm0, [0x2000]
        return
    assert run_until(vcpu) == [("MMIO", "write", 0x40000010, 8, bytes(range(0x10, 0x18))),
                               ("MMIO", "write", 0x40000018, 8, bytes(range(0x18, 0x20))), ("HLT",)]


def test_a_long_mode_page_fault_with_no_idt_is_a_triple_fault_SHUTDOWN(vm):
    mem, vcpu, prog = modes.long_guest(vm, "mov rax, [0x80000000]\n hlt")     # beyond the 1 GiB map
    assert run(vcpu).reason == kvmlab.KVM_EXIT_SHUTDOWN


IDT_GUEST = """
    mov eax, 0
    int 0x30
    hlt
handler:
    mov al, 0x30
    out 0xee, al
    hlt
"""


def test_int_n_in_protected_mode_goes_through_the_idt_upstream_and_is_an_emulation_failure_on_pvm(kvm, vm):
    mem, vcpu, prog = modes.protected_guest(vm, IDT_GUEST, idt=(0x3000, 0x30 * 8 + 7))
    h = prog.symbols["handler"]
    gate = (h & 0xFFFF) | (0x08 << 16) | (0x8E00 << 32) | ((h >> 16) << 48)    # 32-bit interrupt gate
    mem.write(0x3000 + 0x30 * 8, gate.to_bytes(8, "little"))
    ex = run(vcpu)
    if is_pvm(kvm):
        # [PVM] the emulator cannot deliver a protected-mode INT
        assert (ex.reason, ex.suberror) == (kvmlab.KVM_EXIT_INTERNAL_ERROR, 1)
    else:
        assert describe(ex) == ("IO", "out", 0xEE, 1, 1, b"\x30")


def test_vmmcall_is_ud_on_pvm_and_a_hypercall_returning_minus_kvm_enosys_upstream(kvm, vm):
    g = guest(vm, "mov eax, 12345\n vmmcall\n hlt", ivt_stubs=8)
    got = g.run_until()
    if is_pvm(kvm):
        assert got == [("IO", "out", 0xEE, 1, 1, b"\x06"), ("HLT",)]
    else:
        assert got == [("HLT",)]
        assert g.regs.rax & 0xFFFFFFFF == (-1000) & 0xFFFFFFFF


def test_without_irqchip_the_lapic_page_is_ordinary_mmio(vm):
    mem, vcpu, prog = modes.protected_guest(vm, "mov eax, [0xfee00030]\n hlt")
    assert run_until(vcpu, mmio_value=0x1234) == [("MMIO", "read", 0xFEE00030, 4, None), ("HLT",)]
    assert vcpu.get_regs().rax & 0xFFFFFFFF == 0x1234


def test_a_slot_backed_by_unmapped_host_memory_gives_mmio_exits_on_pvm_and_efault_upstream(kvm, vm):
    g = guest(vm, "mov ax, 0x9000\n mov es, ax\n mov byte ptr es:[0], 5\n hlt")
    vm.set_user_memory_region(2, 0x90000, userspace_addr=0x10000000000, memory_size=0x1000)
    if is_pvm(kvm):
        # [PVM] the emulator turns the access into an MMIO exit (reference §3.3: not ABI)
        assert g.run_until() == [("MMIO", "write", 0x90000, 1, b"\x05"), ("HLT",)]
    else:
        with pytest.raises(kvmlab.KvmError) as e:
            g.run_until()
        assert e.value.errno == errno.EFAULT
