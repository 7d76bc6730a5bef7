"""The serial console: what the guest printed (every output device of the Machine).

>>> from kvmlab import asm
>>> from kvmlab.vmm import Machine
>>> m = Machine(mode="real", backend="auto")
>>> m.load(asm.assemble(".code16\\n_start: mov al, 'A'\\n out 0xe9, al\\n hlt", base=0x1000))
>>> con = SerialConsole(m)
>>> _ = m.run()
>>> print(con.refresh())
console (1 byte)
A
>>> m.close()
"""
from __future__ import annotations

from . import html
from ._base import View, resolve


class SerialConsole(View):
    """The Machine's console text; ``send(text)`` queues input for the guest's serial port.
    ``SerialConsole(machine, tail=None)``: ``tail`` keeps only the last lines in the view."""

    def __init__(self, machine, tail: int | None = None):
        m, _, _ = resolve(machine)
        if m is None:
            raise TypeError("SerialConsole needs a Machine (the console is a device of the VMM)")
        super().__init__(m)
        self.tail = tail
        self.data = b""

    def poll(self) -> bool:
        data = bytes(self.machine.console.data)
        if data != self.data:
            self.data = data
            return True
        return False

    @property
    def output(self) -> str:
        text = self.data.decode("utf-8", "replace")
        if self.tail:
            text = "\n".join(text.split("\n")[-self.tail:])
        return text

    def send(self, text: str) -> None:
        """Queue ``text`` for the guest to read from the serial port (RBR)."""
        self.machine.serial.feed(text.encode())

    def text(self) -> str:
        n = len(self.data)
        return f"console ({n} byte{'s' if n != 1 else ''})\n" + self.output

    def _build(self):
        import ipywidgets as W
        self._out = W.HTML(layout=W.Layout(max_height="20em", overflow="auto"))
        entry = W.Text(placeholder="type, Enter sends to the serial port", continuous_update=False)

        def on_submit(change):
            if change["new"]:
                self.send(change["new"] + "\n")
                entry.value = ""
        entry.observe(on_submit, "value")
        return W.VBox([self._out, entry])

    def _update(self) -> None:
        self._out.value = html.pre(self.text())
