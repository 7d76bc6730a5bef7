"""Exercise checks for the lessons: predict, check, then reveal.

A lesson asks a question and leaves ``answer = None`` for the learner to fill in; the
check cell calls :func:`check` with the true value computed from the library.  It says
whether the prediction is right without giving the answer away (the reveal cell after it
does that).

>>> check(None, 45)
not answered yet: set `answer` in the cell above, run it, then run this cell again
>>> check(44, 45, hint="count the IN exits as well as the OUT exits")
not quite: 44 is not it -- count the IN exits as well as the OUT exits
>>> check("0x2d", 45)
correct
>>> check(["hlt", "io"], {"IO", "HLT"})
correct
"""
from __future__ import annotations

import enum

__all__ = ["check", "matches"]


def _norm(v):
    if isinstance(v, enum.Enum):
        return v.name if not isinstance(v, int) else int(v)
    if isinstance(v, bool):
        return v
    if isinstance(v, str):
        s = v.strip()
        try:
            return int(s, 0)
        except ValueError:
            return s.upper()
    if isinstance(v, (set, frozenset)):
        return frozenset(_norm(x) for x in v)
    if isinstance(v, (list, tuple)):
        return tuple(_norm(x) for x in v)
    if isinstance(v, dict):
        return {_norm(k): _norm(x) for k, x in v.items()}
    try:
        return int(v) if float(v) == int(v) else v
    except (TypeError, ValueError, OverflowError):
        return v


def matches(answer, truth) -> bool:
    """True if ``answer`` means ``truth``: ints also as strings ("0x2d"), strings without
    regard to case or surrounding spaces, lists against sets in any order."""
    a, t = _norm(answer), _norm(truth)
    if isinstance(t, frozenset) and isinstance(a, tuple):
        a = frozenset(a)
    if isinstance(a, frozenset) and isinstance(t, tuple):
        t = frozenset(t)
    return a == t


def check(answer, truth, hint: str | None = None) -> None:
    """Print ``not answered yet``, ``correct`` or ``not quite: ...`` (never ``truth``).
    Returns None, so a notebook cell shows only the printed line."""
    if answer is None:
        print("not answered yet: set `answer` in the cell above, run it, then run this cell again")
    elif matches(answer, truth):
        print("correct")
    else:
        print(f"not quite: {answer!r} is not it" + (f" -- {hint}" if hint else ""))
