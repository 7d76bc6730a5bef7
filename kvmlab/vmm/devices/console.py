"""The console: text the guest printed, in order, from every output device.

>>> c = Console()
>>> c.put(b"hi\\n", "serial")
>>> c.text
'hi\\n'
"""
from __future__ import annotations


class Console:
    """Collects output bytes; ``text`` decodes them (UTF-8, bad bytes replaced).
    ``echo`` (a callable taking str) sees each chunk as it arrives, e.g. ``sys.stdout.write``."""

    def __init__(self, echo=None):
        self.data = bytearray()
        self.echo = echo

    def put(self, data: bytes, source: str = "") -> None:
        self.data += data
        if self.echo is not None:
            self.echo(bytes(data).decode("utf-8", "replace"))

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "replace")

    def clear(self) -> None:
        self.data.clear()

    def __repr__(self) -> str:
        return f"<Console {len(self.data)} bytes>"
