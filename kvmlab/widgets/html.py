"""Small HTML and image helpers shared by the views (no state, no widgets).

>>> pre("a < b")
'<pre style="font-family: monospace; line-height: 1.25; margin: 0">a &lt; b</pre>'
"""
from __future__ import annotations

import html as _html
import io

STYLE = "font-family: monospace; line-height: 1.25; margin: 0"


def esc(text: str) -> str:
    return _html.escape(text, quote=False)


def pre(text: str, raw: bool = False) -> str:
    """``text`` in a <pre> block (``raw``: already HTML)."""
    return f'<pre style="{STYLE}">{text if raw else esc(text)}</pre>'


def mark(text: str, color: str = "#ffe066", title: str | None = None) -> str:
    """``text`` (escaped) on a coloured background."""
    t = f' title="{esc(title)}"' if title else ""
    return f'<span style="background: {color}"{t}>{esc(text)}</span>'


def png(fig) -> bytes:
    """A matplotlib Figure as PNG bytes (Agg: works from any thread, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def figure(width: float = 8, height: float = 2.5):
    """A new matplotlib Figure (not registered with pyplot, so nothing leaks between cells)."""
    from matplotlib.figure import Figure
    return Figure(figsize=(width, height))
