"""Build the lesson notebooks from their sources in ``notebooks/src/``.

Each lesson is written as a plain-text "percent" script, easy to review and diff::

    # %% [markdown]
    # # A heading
    # Some text.
    # %%
    print("a code cell")
    # %% check
    print("a cell whose printed output nbval compares")
    # %% [expect]
    # a cell whose printed output nbval compares

``# %% check`` marks a cell with the ``nbval-check-output`` tag; the ``# %% [expect]``
block after it is the text it must print (stored as the cell's only output, a stdout
stream, with an execution count, because nbval compares only cells that have one).  Every
other cell is stored without outputs and without an execution count.

Usage (from the repository root)::

    python notebooks/build.py                 # write notebooks/NN_name.ipynb for every source
    python notebooks/build.py --check [NN]    # also run them (nbclient) and diff the checked cells
    python notebooks/build.py --update NN     # run one and copy the checked cells' output into its source

``--check``/``--update`` run on ``$KVMLAB_BACKEND`` (default: the simulator).
"""
from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
import time
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
SRC = HERE / "src"
CHECK_TAG = "nbval-check-output"
_HEADER = re.compile(r"^# %%(.*)$")


def _uncomment(lines):
    out = []
    for ln in lines:
        if ln.startswith("# "):
            out.append(ln[2:])
        elif ln.rstrip() == "#":
            out.append("")
        else:
            raise ValueError(f"markdown/expect line must start with '# ': {ln!r}")
    return out


def _trim(lines):
    while lines and not lines[0].strip():
        lines = lines[1:]
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    return lines


def parse(text: str) -> list[dict]:
    """Split a lesson source into cells: dicts with kind (markdown|code|expect), source, check."""
    cells, cur = [], None
    for ln in text.splitlines():
        m = _HEADER.match(ln)
        if m:
            head = m.group(1).strip()
            if head == "[markdown]":
                cur = {"kind": "markdown", "lines": [], "check": False}
            elif head == "[expect]":
                cur = {"kind": "expect", "lines": [], "check": False}
            elif head in ("", "check"):
                cur = {"kind": "code", "lines": [], "check": head == "check"}
            else:
                raise ValueError(f"unknown cell header {ln!r}")
            cells.append(cur)
            continue
        if cur is None:
            if ln.strip():
                raise ValueError(f"text before the first '# %%' header: {ln!r}")
            continue
        cur["lines"].append(ln)
    out = []
    for c in cells:
        lines = _trim(c["lines"])
        if c["kind"] in ("markdown", "expect"):
            lines = _uncomment(lines)
        if c["kind"] == "expect":
            if not out or not out[-1]["check"] or "expect" in out[-1]:
                raise ValueError("an [expect] block must follow a '# %% check' cell")
            out[-1]["expect"] = "\n".join(lines) + "\n" if lines else ""
            continue
        out.append({"kind": c["kind"], "source": "\n".join(lines), "check": c["check"]})
    for c in out:
        if c["check"] and "expect" not in c:
            raise ValueError(f"checked cell without an [expect] block:\n{c['source'][:200]}")
    return out


def notebook(cells: list[dict]) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    n_code = 0
    for i, c in enumerate(cells):
        n_code += c["kind"] == "code"
        if c["kind"] == "markdown":
            cell = nbformat.v4.new_markdown_cell(c["source"])
        else:
            cell = nbformat.v4.new_code_cell(c["source"])
            if c["check"]:
                cell.metadata["tags"] = [CHECK_TAG]
                cell.execution_count = n_code     # nbval compares only cells that "ran"
                if c["expect"]:
                    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=c["expect"])]
        cell.id = f"c{i:03d}"
        nb.cells.append(cell)
    return nb


def sources() -> list[Path]:
    return sorted(SRC.glob("[0-9][0-9]_*.py"))


def build_one(src: Path) -> nbformat.NotebookNode:
    return notebook(parse(src.read_text(encoding="utf-8")))


def target(src: Path) -> Path:
    return HERE / (src.stem + ".ipynb")


def dumps(nb) -> str:
    return nbformat.writes(nb) + "\n"


def write_all(selected=None) -> None:
    for src in sources():
        if selected and not any(src.stem.startswith(s) for s in selected):
            continue
        nb = build_one(src)
        nbformat.validate(nb)
        target(src).write_text(dumps(nb), encoding="utf-8")


def execute(nb, allow_errors=False, timeout=300):
    from nbclient import NotebookClient
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=allow_errors,
                            resources={"metadata": {"path": str(HERE)}})
    client.execute()
    return nb


def _text(cell) -> str:
    parts = []
    for o in cell.get("outputs", []):
        if o.output_type == "stream":
            parts.append(o.text)
        elif o.output_type == "error":
            parts.append(f"ERROR {o.ename}: {o.evalue}\n")
        elif "text/plain" in o.get("data", {}):
            parts.append(o.data["text/plain"] + "\n")
    return "".join(parts)


def check(src: Path, allow_errors=False, update=False) -> bool:
    cells = parse(src.read_text(encoding="utf-8"))
    nb = build_one(src)
    for c in nb.cells:
        if c.cell_type == "code":
            c.outputs = []
    t0 = time.monotonic()
    execute(nb, allow_errors=allow_errors)
    dt = time.monotonic() - t0
    ok = True
    actual = {}
    for c, cell in zip(cells, nb.cells):
        if cell.cell_type != "code":
            continue
        got = _text(cell)
        errs = [o for o in cell.outputs if o.output_type == "error"]
        if errs:
            ok = False
            print(f"--- {src.stem} cell {cell.id}: {errs[0].ename}: {errs[0].evalue}")
        if c["check"]:
            actual[cell.id] = got
            if got != c["expect"]:
                ok = False
                print(f"--- {src.stem} cell {cell.id} differs:")
                sys.stdout.writelines(difflib.unified_diff(c["expect"].splitlines(True), got.splitlines(True),
                                                           "expected", "got"))
    print(f"=== {src.stem}: {'ok' if ok else 'DIFFERENCES'} in {dt:.1f} s "
          f"(backend {os.environ.get('KVMLAB_BACKEND', 'sim')})")
    if update:
        _update_source(src, nb, cells)
    return ok


def _update_source(src: Path, nb, cells) -> None:
    """Rewrite the [expect] blocks of ``src`` with what the checked cells printed."""
    outs = [_text(cell) for c, cell in zip(cells, nb.cells) if c["check"]]
    text = src.read_text(encoding="utf-8").splitlines()
    res, i, k = [], 0, 0
    while i < len(text):
        ln = text[i]
        if ln.strip() == "# %% [expect]":
            res.append(ln)
            i += 1
            while i < len(text) and not _HEADER.match(text[i]):
                i += 1
            body = outs[k].rstrip("\n").split("\n") if outs[k] else []
            res.extend(("# " + b) if b else "#" for b in body)
            res.append("")
            k += 1
            continue
        res.append(ln)
        i += 1
    src.write_text("\n".join(res).rstrip("\n") + "\n", encoding="utf-8")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="run the notebooks and diff the checked cells")
    ap.add_argument("--update", action="store_true", help="run and copy checked outputs into the source")
    ap.add_argument("--allow-errors", action="store_true", help="keep going after a failing cell")
    ap.add_argument("lessons", nargs="*", help="lesson number prefixes (default: all)")
    a = ap.parse_args(argv)
    write_all(a.lessons)
    ok = True
    if a.check or a.update:
        for src in sources():
            if a.lessons and not any(src.stem.startswith(s) for s in a.lessons):
                continue
            ok &= check(src, allow_errors=a.allow_errors or a.update, update=a.update)
        if a.update:
            write_all(a.lessons)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
