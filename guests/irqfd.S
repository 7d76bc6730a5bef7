# kvmlab: mode=real load=0x1000
# kvmlab: irqchip=1 irqfd=4@0.05
#
# irqfd.S -- an interrupt that wakes a halted vCPU, with no exit on the way in.
# The header asks for the in-kernel irqchip (PIC, IOAPIC, LAPIC) and an irqfd on GSI 4
# that the VMM signals 50 ms after the run starts.  After reset the in-kernel PIC is
# unmasked with vector base 0, so IRQ 4 arrives as vector 4 (reference §13.3).  With the
# irqchip, HLT does not exit: the vCPU sleeps inside KVM_RUN until the interrupt.
.intel_syntax noprefix
.code16

.equ DEBUG_EXIT, 0xf4

_start:
    xor ax, ax
    mov ds, ax
    mov word ptr [4 * 4], offset irq4   # IVT entry 4 = 0000:irq4
    mov word ptr [4 * 4 + 2], 0
    mov si, offset waiting
    call puts
    sti
idle:
    hlt                         # sleeps in the kernel; no KVM_EXIT_HLT
    jmp idle

irq4:
    mov si, offset arrived
    call puts
    mov al, 0x20
    out 0x20, al                # EOI to the in-kernel PIC (no exit)
    xor al, al
    out DEBUG_EXIT, al
    iret

puts:
    mov dx, 0x3f8
1:  lodsb
    test al, al
    jz 2f
    out dx, al
    jmp 1b
2:  ret

waiting:
    .asciz "waiting for IRQ 4\n"
arrived:
    .asciz "IRQ 4 arrived as vector 4\n"
