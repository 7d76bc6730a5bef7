"""Imports go one way (DESIGN §5): uapi <- cpu <- sim; uapi <- API <- backends <- vmm <- widgets.

Checked statically on the source, so a wrong import is caught even in code no test runs."""
import ast
import pathlib

PKG = pathlib.Path(__file__).resolve().parents[1] / "kvmlab"

# package part -> kvmlab parts it must never import
FORBIDDEN = {
    "uapi": {"cpu", "sim", "hw", "vmm", "widgets", "kvm", "vm", "vcpu", "exits", "asm", "cli", "bench"},
    "cpu": {"sim", "hw", "vmm", "widgets", "kvm", "vm", "vcpu", "exits", "cli", "bench"},
    "sim": {"hw", "vmm", "widgets", "kvm", "vm", "vcpu", "cli", "bench"},
    "hw": {"sim", "cpu", "vmm", "widgets"},
    "vmm": {"sim", "cpu", "hw", "widgets"},
    "asm": {"sim", "cpu", "hw", "vmm", "widgets"},
    "hostmem": {"sim", "cpu", "hw", "vmm", "widgets", "kvm", "vm", "vcpu"},
}
THIRD_PARTY_ONLY_IN = {"ipywidgets": {"widgets"}, "matplotlib": {"widgets"}, "IPython": {"widgets"}}


def part_of(path: pathlib.Path) -> str:
    rel = path.relative_to(PKG).parts
    return rel[0].removesuffix(".py")


def kvmlab_imports(path: pathlib.Path):
    tree = ast.parse(path.read_text(), str(path))
    rel_parts = path.relative_to(PKG).parts
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the package path
                base = list(rel_parts[:-1])
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                mod = ".".join(["kvmlab", *base] + ([node.module] if node.module else []))
                yield mod
                if not node.module:
                    for a in node.names:
                        yield f"{mod}.{a.name}"
            else:
                yield node.module or ""


def test_every_module_imports_only_the_layers_below_it():
    problems = []
    for path in PKG.rglob("*.py"):
        part = part_of(path)
        for mod in kvmlab_imports(path):
            top = mod.split(".")[0]
            if top in THIRD_PARTY_ONLY_IN and part not in THIRD_PARTY_ONLY_IN[top]:
                problems.append(f"{path.relative_to(PKG)} imports {mod}")
            if top != "kvmlab" or mod == "kvmlab":
                continue
            target = mod.split(".")[1]
            if target in FORBIDDEN.get(part, set()):
                problems.append(f"{path.relative_to(PKG)} imports {mod}")
    assert not problems, "imports against the layering:\n" + "\n".join(problems)


def test_only_the_hw_backend_opens_dev_kvm():
    """The simulated kernel may call itself /dev/kvm, but nothing outside hw opens the device."""
    def opens_it(path):
        for n in ast.walk(ast.parse(path.read_text())):
            if (isinstance(n, ast.Call) and getattr(n.func, "attr", getattr(n.func, "id", "")) == "open"
                    and n.args and isinstance(n.args[0], ast.Constant) and n.args[0].value == "/dev/kvm"):
                return True
        return False
    offenders = [str(p.relative_to(PKG)) for p in PKG.rglob("*.py") if opens_it(p) and part_of(p) != "hw"]
    assert offenders == []
