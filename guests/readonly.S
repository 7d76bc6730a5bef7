# kvmlab: mode=protected load=0x80000 memory=512K
# kvmlab: rom=0x80000+0x1000
#
# readonly.S -- a guest that runs from ROM.  The header asks for 512 KiB of RAM (slot 0)
# and a KVM_MEM_READONLY slot at 0x80000; the image is loaded into that ROM.  Instruction
# fetches and reads from a READONLY slot are ordinary memory accesses (no exit); every
# WRITE to it is a KVM_EXIT_MMIO with is_write=1 and the memory stays unchanged.
.intel_syntax noprefix
.code32

.equ COM1, 0x3f8
.equ DEBUG_EXIT, 0xf4

_start:
    mov eax, dword ptr [signature]      # read from ROM: no exit
    mov bl, 1
    cmp eax, 0x214d4f52                 # "ROM!"
    jne fail
    mov dword ptr [signature], 0xdeadbeef   # write to ROM: MMIO exit, ignored
    mov ecx, dword ptr [signature]
    mov bl, 2
    cmp ecx, eax                        # still "ROM!"
    jne fail
    mov dword ptr [0x2000], 0xdeadbeef  # RAM is writable as usual
    mov bl, 3
    cmp dword ptr [0x2000], 0xdeadbeef
    jne fail

    mov esi, offset okmsg
    mov dx, COM1
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

signature:
    .ascii "ROM!"
okmsg:
    .asciz "ROM unchanged after a write\n"
