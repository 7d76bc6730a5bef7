# kvmlab: mode=protected load=0x1000
# kvmlab: ioeventfd_pio=0x520+2 ioeventfd=0xd0002000+4
#
# ioeventfd.S -- doorbells.  A guest write that matches an ioeventfd (same bus, address
# and length) only increments an eventfd counter inside the kernel: no exit at all.
# This is how virtio queues are kicked.  Writes of another length exit as usual.
#   * 3 word-sized OUTs to port 0x520 and 2 dword writes to 0xD0002000: counters 3 and 2;
#   * a byte OUT to 0x520 and a byte write to 0xD0002000: ordinary IO and MMIO exits.
.intel_syntax noprefix
.code32

.equ DOORBELL_PIO, 0x520
.equ DOORBELL_MMIO, 0xd0002000
.equ DEBUG_EXIT, 0xf4

_start:
    mov dx, DOORBELL_PIO
    mov ax, 1
    out dx, ax                  # ioeventfd: no exit
    out dx, ax
    out dx, ax
    mov dword ptr [DOORBELL_MMIO], 1    # ioeventfd: no exit
    mov dword ptr [DOORBELL_MMIO], 2
    out dx, al                  # length 1 does not match: KVM_EXIT_IO
    mov byte ptr [DOORBELL_MMIO], 3     # length 1 does not match: KVM_EXIT_MMIO

    mov esi, offset msg
    mov dx, 0x3f8
1:  lodsb
    test al, al
    jz 2f
    out dx, al
    jmp 1b
2:  xor eax, eax
    out DEBUG_EXIT, al
    hlt

msg:
    .asciz "doorbells rung\n"
