# kvmlab: mode=protected load=0x1000
# kvmlab: coalesced=0xd0000800+0x100 coalesced_pio=0xe9+1
#
# coalesced.S -- coalesced MMIO and PIO.  Writes inside a coalesced zone do not exit:
# KVM appends them to the ring (page 2 of the vCPU mmap) and the VMM replays them on its
# devices after the next exit, BEFORE handling that exit, so devices see writes in order.
#   * the banner goes to the debug console (port 0xE9, a coalesced PIO zone): no exits;
#   * 16 dwords go into the scratch device at 0xD0000800 (a coalesced MMIO zone): no exits;
#   * a read there exits (reads are never coalesced) and already sees the last write.
.intel_syntax noprefix
.code32

.equ ZONE, 0xd0000800
.equ DEBUG_EXIT, 0xf4

_start:
    mov esi, offset msg
1:  lodsb
    test al, al
    jz 2f
    out 0xe9, al                # coalesced PIO: no exit
    jmp 1b
2:  mov edi, ZONE
    mov ecx, 16
    mov eax, 0x1000
3:  mov dword ptr [edi], eax    # coalesced MMIO: no exit
    add edi, 4
    inc eax
    loop 3b
    mov eax, dword ptr [ZONE + 15 * 4]   # MMIO read exit: the ring is drained first
    mov bl, 1
    cmp eax, 0x100f
    jne fail
    xor eax, eax
    out DEBUG_EXIT, al
    hlt
fail:
    mov al, bl
    out DEBUG_EXIT, al
    hlt

msg:
    .asciz "written through the coalesced ring\n"
