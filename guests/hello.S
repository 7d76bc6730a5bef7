# kvmlab: mode=real load=0x1000
#
# hello.S -- the smallest complete guest: print a line on the serial port, then tell the
# VMM "success" through the debug-exit port.  Real mode: CS=DS=SS=0, so labels are
# plain addresses.
.intel_syntax noprefix
.code16

.equ COM1, 0x3f8            # 16550 data register (THR)
.equ LSR, COM1 + 5          # line status register; bit 5 (THRE): ready to send
.equ DEBUG_EXIT, 0xf4       # write a status here and the run ends with it

_start:
    mov si, offset msg
next:
    lodsb                   # al = [ds:si], si += 1
    test al, al
    jz done
    mov ah, al
    mov dx, LSR
wait:
    in al, dx               # IN exit: the VMM answers THRE|TEMT
    test al, 0x20
    jz wait
    mov al, ah
    mov dx, COM1
    out dx, al              # OUT exit: the VMM prints the character
    jmp next
done:
    xor al, al
    out DEBUG_EXIT, al      # status 0: success
stopped:
    hlt                     # not reached: the run has ended

msg:
    .asciz "Hello from real mode!\n"
