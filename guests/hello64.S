# kvmlab: mode=long load=0x1000
#
# hello64.S -- "hello" in 64-bit long mode.  The VMM built 4-level page tables at
# 0x10000 that identity-map the first 4 GiB with 2 MiB pages, set CR0.PG, CR4.PAE and
# EFER.LME|LMA, and loaded a 64-bit code segment (L=1): the guest starts in long mode.
.intel_syntax noprefix
.code64

.equ COM1, 0x3f8
.equ LSR, COM1 + 5
.equ DEBUG_EXIT, 0xf4

_start:
    lea rsi, [rip + msg]
    call puts
    xor eax, eax
    out DEBUG_EXIT, al      # status 0: success; the run ends here
stopped:
    hlt

# puts: print the NUL-terminated string at rsi on COM1
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
    .asciz "Hello from long mode!\n"
