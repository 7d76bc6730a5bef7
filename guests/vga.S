# kvmlab: mode=real load=0x1000
#
# vga.S -- VGA text mode.  The 80x25 text buffer at 0xB8000 is plain RAM here: writing it
# causes no exits; the VMM reads it back (Machine.vga.text()).  Each cell is a character
# byte and an attribute byte (0x07: grey on black, 0x1f: white on blue).
.intel_syntax noprefix
.code16

_start:
    mov ax, 0xb800
    mov es, ax
    xor di, di
    mov si, offset msg
    mov ah, 0x1f
1:  lodsb
    test al, al
    jz 2f
    stosw                       # es:[di] = ax (char, attribute)
    jmp 1b
2:  mov di, 160                 # row 1
    mov si, offset msg2
    mov ah, 0x07
3:  lodsb
    test al, al
    jz 4f
    stosw
    jmp 3b
4:  xor al, al
    out 0xf4, al
    hlt

msg:
    .asciz "Hello from VGA text mode!"
msg2:
    .asciz "(no exits: this is RAM at 0xB8000)"
