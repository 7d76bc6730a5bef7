# kvmlab: mode=protected load=0x1000
#
# hello32.S -- "hello" in 32-bit protected mode.  The VMM built a flat GDT at 0x500
# (code 0x08, data 0x10) and loaded CS/DS/ES/SS with KVM_SET_SREGS, so the guest starts
# directly in protected mode with 4 GiB flat segments; no mode-switch code is needed.
.intel_syntax noprefix
.code32

.equ COM1, 0x3f8
.equ LSR, COM1 + 5
.equ DEBUG_EXIT, 0xf4

_start:
    mov esi, offset msg
    call puts
    xor eax, eax
    out DEBUG_EXIT, al      # status 0: success; the run ends here
stopped:
    hlt

# puts: print the NUL-terminated string at esi on COM1 (polls LSR.THRE like Linux does)
puts:
    lodsb
    test al, al
    jz 2f
    mov ah, al
    mov dx, LSR
1:  in al, dx
    test al, 0x20
    jz 1b
    mov al, ah
    mov dx, COM1
    out dx, al
    jmp puts
2:  ret

msg:
    .asciz "Hello from protected mode!\n"
