"""The exits widget names the instruction that caused an exit, also when KVM reports rip
already past it and the next instruction's mnemonic merely starts like one that exits."""
from kvmlab import asm
from kvmlab.vmm import Machine
from kvmlab.widgets import ExitMonitor

TICKER = r"""
.code16
_start:
    xor bx, bx
again:
    mov al, bl
    out 0xe9, al
    inc bx
    mov cx, 30
spin:
    loop spin
    jmp again
"""


def test_an_out_followed_by_inc_is_named_as_the_out_not_the_inc():
    m = Machine(mode="real", backend="sim")
    m.load(asm.assemble(TICKER, base=0x1000))
    mon = ExitMonitor(m)
    m.run(max_exits=3, trace=mon.trace)
    text = mon.detail(1)
    assert "instruction: 0x1004: out 0xe9, al" in text
    assert "inc bx" not in text
