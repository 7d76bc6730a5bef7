# kvmlab: mode=long load=0x1000
#
# paging.S -- the guest builds its own 4-level page tables and reads through them.
# (On this host only long-mode paging works: reference §19.)
#
#   VA 0x0-0x1FFFFF            -> PA 0x0       2 MiB page (identity: code, stack, tables)
#   VA 0x200000-0x3FFFFF       -> PA 0x0       2 MiB page (an alias of the first one)
#   VA 0x400000                -> PA 0x110000  4 KiB page
#   VA 0x401000                -> PA 0x110000  4 KiB page (alias), later remapped to 0x111000
#   VA 0xFFFF800000000000      -> PA 0x111000  4 KiB page in the higher half (PML4 slot 256)
#
# Tables (all in RAM): PML4 0x100000, PDPT 0x101000, PD 0x102000, PT 0x103000,
# higher half: PDPT 0x104000, PD 0x105000, PT 0x106000.
.intel_syntax noprefix
.code64

.equ PML4, 0x100000
.equ PDPT, 0x101000
.equ PD, 0x102000
.equ PT, 0x103000
.equ PDPT_HI, 0x104000
.equ PD_HI, 0x105000
.equ PT_HI, 0x106000
.equ PAGE_A, 0x110000
.equ PAGE_B, 0x111000
.equ P_RW, 3                    # present | writable
.equ P_RW_PS, 0x83              # present | writable | 2 MiB page
.equ DEBUG_EXIT, 0xf4

_start:
    mov rdi, PML4               # zero the 7 table pages
    xor eax, eax
    mov ecx, 7 * 512
    rep stosq

    mov qword ptr [PML4], PDPT + P_RW
    mov qword ptr [PML4 + 256 * 8], PDPT_HI + P_RW
    mov qword ptr [PDPT], PD + P_RW
    mov qword ptr [PD], 0 + P_RW_PS             # 0-2 MiB identity
    mov qword ptr [PD + 8], 0 + P_RW_PS         # 2-4 MiB -> 0 (alias)
    mov qword ptr [PD + 16], PT + P_RW          # 4-6 MiB: 4 KiB pages
    mov qword ptr [PT], PAGE_A + P_RW           # 0x400000 -> A
    mov qword ptr [PT + 8], PAGE_A + P_RW       # 0x401000 -> A
    mov qword ptr [PDPT_HI], PD_HI + P_RW
    mov qword ptr [PD_HI], PT_HI + P_RW
    mov qword ptr [PT_HI], PAGE_B + P_RW        # 0xffff800000000000 -> B

    mov rax, PML4
    mov cr3, rax                # switch to the guest's own tables (flushes the TLB)

    mov rax, 0x1122334455667788
    mov qword ptr [0x400000], rax
    mov bl, 1
    cmp qword ptr [0x401000], rax       # the alias sees it
    jne fail
    mov bl, 2
    cmp qword ptr [PAGE_A], rax         # and so does the identity map of page A
    jne fail

    mov rdx, 0xffff800000000000
    mov rax, 0x0badf00dcafe1234
    mov qword ptr [rdx], rax            # write through the higher half
    mov bl, 3
    cmp qword ptr [PAGE_B], rax
    jne fail

    mov qword ptr [PT + 8], PAGE_B + P_RW   # remap 0x401000 -> B
    invlpg [0x401000]                   # drop the stale translation
    mov bl, 4
    cmp qword ptr [0x401000], rax
    jne fail

    mov rax, qword ptr [_start]         # 2 MiB alias: same bytes at +2 MiB
    mov bl, 5
    cmp qword ptr [_start + 0x200000], rax
    jne fail

    lea rsi, [rip + okmsg]
    mov dx, 0x3f8
1:  lodsb
    test al, al
    jz 2f
    out dx, al
    jmp 1b
2:  xor eax, eax
    out DEBUG_EXIT, al
    hlt

fail:
    mov al, bl
    out DEBUG_EXIT, al
    hlt

okmsg:
    .asciz "paging ok: aliases, higher half, remap + invlpg\n"
