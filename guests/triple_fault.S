# kvmlab: mode=protected load=0x1000
#
# triple_fault.S -- KVM_EXIT_SHUTDOWN.  The Machine leaves the IDT empty (limit 0) in
# protected mode, so the #UD from `ud2` cannot be delivered (#GP), neither can the #GP
# (#DF), nor the double fault: a triple fault, which KVM reports as SHUTDOWN.
# (Upstream kvm-amd resets the vCPU before reporting it; PVM and VMX keep the state.)
.intel_syntax noprefix
.code32

_start:
    mov esi, offset msg
    mov dx, 0x3f8
1:  lodsb
    test al, al
    jz 2f
    out dx, al
    jmp 1b
2:
fault:
    ud2                         # -> #UD -> #GP -> #DF -> triple fault

msg:
    .asciz "about to triple fault\n"
