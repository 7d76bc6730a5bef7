# kvmlab: mode=real load=0x1000
#
# pio.S -- port I/O exits (KVM_EXIT_IO) of every shape:
#   * OUT and IN of 1, 2 and 4 bytes to the scratch registers at port 0x510,
#     reading back what was written (the VMM completes each IN on the next KVM_RUN);
#   * IN from a port nobody handles (0x80): the VMM answers all ones, like an empty bus;
#   * string I/O: `rep outsb` (one exit per byte) prints the banner on COM1, and
#     `rep insb` reads 8 bytes in ONE exit (count=8).
# Failure n writes status n to the debug-exit port; success writes 0.
.intel_syntax noprefix
.code16

.equ COM1, 0x3f8
.equ SCRATCH, 0x510
.equ DEBUG_EXIT, 0xf4

_start:
    cld
    mov si, offset banner
    mov cx, banner_end - banner
    mov dx, COM1
    rep outsb                   # one IO exit per byte: size=1 count=1

    mov dx, SCRATCH
    mov al, 0x5a
    out dx, al                  # OUT size=1
    xor al, al
    in al, dx                   # IN size=1 -> 0x5a
    mov bl, 1
    cmp al, 0x5a
    jne fail

    mov ax, 0x1234
    out dx, ax                  # OUT size=2
    xor ax, ax
    in ax, dx                   # IN size=2 -> 0x1234
    mov bl, 2
    cmp ax, 0x1234
    jne fail

    mov eax, 0xcafebabe
    out dx, eax                 # OUT size=4
    xor eax, eax
    in eax, dx                  # IN size=4 -> 0xcafebabe
    mov bl, 3
    cmp eax, 0xcafebabe
    jne fail

    in al, 0x80                 # nobody there: 0xff
    mov bl, 4
    cmp al, 0xff
    jne fail

    mov di, offset buf
    mov cx, 8
    mov dx, SCRATCH
    rep insb                    # ONE exit: IN size=1 count=8, each byte = 0xbe
    mov si, offset buf
    mov cx, 8
    mov bl, 5
1:  lodsb
    cmp al, 0xbe
    jne fail
    loop 1b

    mov si, offset okmsg
    mov cx, okmsg_end - okmsg
    mov dx, COM1
    rep outsb
    xor al, al
    out DEBUG_EXIT, al
    hlt

fail:
    mov al, bl
    out DEBUG_EXIT, al
    hlt

banner:
    .ascii "PIO: out/in 1, 2, 4 bytes, rep outsb, rep insb\n"
banner_end:
okmsg:
    .ascii "PIO ok\n"
okmsg_end:
buf:
    .fill 8, 1, 0
