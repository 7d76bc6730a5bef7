# kvmlab: mode=protected load=0x1000
#
# mmio.S -- MMIO exits (KVM_EXIT_MMIO).  No memslot covers 0xD0000000, so every access
# there leaves the guest: the VMM's MMIO bus hands it to the scratch device, which stores
# writes and returns them on reads.
#   * writes of 1, 2 and 4 bytes, then a 4-byte read that sees all three;
#   * `add dword ptr [mmio], 1`: a read exit, then a write exit with the sum;
#   * a read at 0xE0000000, where no device is: all ones.
.intel_syntax noprefix
.code32

.equ SCRATCH, 0xd0000000
.equ NOWHERE, 0xe0000000
.equ COM1, 0x3f8
.equ DEBUG_EXIT, 0xf4

_start:
    mov byte ptr [SCRATCH], 0x11            # MMIO write len=1
    mov word ptr [SCRATCH + 2], 0x2233      # MMIO write len=2
    mov dword ptr [SCRATCH + 4], 0x44556677 # MMIO write len=4
    mov eax, dword ptr [SCRATCH]            # MMIO read len=4 -> 0x22330011
    mov bl, 1
    cmp eax, 0x22330011
    jne fail

    add dword ptr [SCRATCH + 4], 1          # read exit, then write exit (0x44556678)
    mov eax, dword ptr [SCRATCH + 4]
    mov bl, 2
    cmp eax, 0x44556678
    jne fail

    mov eax, dword ptr [NOWHERE]            # nobody there: 0xffffffff
    mov bl, 3
    cmp eax, 0xffffffff
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

okmsg:
    .asciz "MMIO ok\n"
