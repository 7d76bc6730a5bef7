# kvmlab: mode=real load=0x1000
# kvmlab: breakpoint=here
#
# breakpoint.S -- KVM_EXIT_DEBUG.  The header asks the VMM for a hardware breakpoint at
# the label `here` (KVM_SET_GUEST_DEBUG with KVM_GUESTDBG_USE_HW_BP, DR0 = its address,
# DR7 = L0).  The run stops BEFORE that instruction: exception 1 (#DB), pc = `here`.
# Labels are addresses (prog.symbols), so any label can be a breakpoint.  Clear the
# breakpoint (Machine.clear_breakpoints()) and run again to finish.
.intel_syntax noprefix
.code16

_start:
    mov si, offset before
    call puts
here:
    mov si, offset after        # the breakpoint fires before this instruction
    call puts
    xor al, al
    out 0xf4, al
    hlt

puts:
    mov dx, 0x3f8
1:  lodsb
    test al, al
    jz 2f
    out dx, al
    jmp 1b
2:  ret

before:
    .asciz "before the breakpoint\n"
after:
    .asciz "after the breakpoint\n"
