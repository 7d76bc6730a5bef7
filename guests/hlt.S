# kvmlab: mode=real load=0x1000
#
# hlt.S -- KVM_EXIT_HLT.  Without an in-kernel irqchip, HLT leaves KVM_RUN and the VMM
# decides what "halted" means; the Machine ends the run there (Machine(stop_on_hlt=False)
# resumes the guest after the HLT instead).
.intel_syntax noprefix
.code16

_start:
    mov si, offset msg
    mov dx, 0x3f8
1:  lodsb
    test al, al
    jz 2f
    out dx, al
    jmp 1b
2:  cli
halt:
    hlt                         # KVM_EXIT_HLT, rip after the hlt
    mov al, 0                   # with stop_on_hlt=False: resumes here and exits with 0
    out 0xf4, al
    jmp halt

msg:
    .asciz "halting\n"
