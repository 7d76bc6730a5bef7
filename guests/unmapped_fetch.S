# kvmlab: mode=protected load=0x1000
#
# unmapped_fetch.S -- KVM_EXIT_INTERNAL_ERROR.  Jumping to a guest-physical address with
# no memslot: data accesses there would be MMIO exits, but KVM cannot fetch instructions
# from MMIO, so it gives up with suberror 1 (KVM_INTERNAL_ERROR_EMULATION).
.intel_syntax noprefix
.code32

.equ NOWHERE, 0x40000000            # 1 GiB: far above the 2 MiB of RAM

_start:
    mov esi, offset msg
    mov dx, 0x3f8
1:  lodsb
    test al, al
    jz 2f
    out dx, al
    jmp 1b
2:  mov eax, NOWHERE
    jmp eax

msg:
    .asciz "jumping to 0x40000000\n"
