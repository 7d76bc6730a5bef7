"""kvmlab.uapi against the installed C headers: gcc prints sizeof/offsetof and the macros.

Every struct of kvmlab.uapi that the installed <linux/kvm.h>/<asm/kvm.h> also declares is
compared field by field (offset and size of every named member, nested members by their
C path such as ``io.port``), every ioctl number and every KVM_* constant the headers
define.  Names newer than the installed headers (6.1 here) are compared only where they
exist.  Skipped, with the reason, when gcc or the headers are missing.
"""
import ctypes
import pathlib
import re
import shutil
import subprocess

import pytest

import kvmlab.uapi as uapi

HEADERS = [pathlib.Path("/usr/include/linux/kvm.h"),
           pathlib.Path("/usr/include/x86_64-linux-gnu/asm/kvm.h"),
           pathlib.Path("/usr/include/asm/kvm.h")]

# Members that newer headers added to structs the 6.1 headers already have.
NEWER_MEMBERS = {("kvm_run", "hypercall.flags"), ("kvm_run", "memory_fault")}
# Macros the C side cannot evaluate in userspace (PAGE_SIZE is kernel-only).
NOT_C_MACROS = {"KVM_COALESCED_MMIO_MAX", "PAGE_SIZE"}


def _header_text() -> str:
    return "\n".join(p.read_text() for p in HEADERS if p.exists())


def _c_structs(text: str) -> set:
    return set(re.findall(r"^struct (kvm_\w+) \{", text, re.M))


def _paths(cls, prefix=""):
    """(C member path, ctypes type, is_bitfield) for every named member, recursively."""
    anonymous = getattr(cls, "_anonymous_", ())
    for name, ftype, *bits in cls._fields_:
        if name in anonymous:
            yield from _paths(ftype, prefix)
            continue
        path = prefix + name
        yield path, ftype, bool(bits)
        if not bits and issubclass(ftype, (ctypes.Structure, ctypes.Union)):
            yield from _paths(ftype, path + ".")


def _is_newer(struct, path):
    return any(path == p or path.startswith(p + ".") for s, p in NEWER_MEMBERS if s == struct)


@pytest.fixture(scope="module")
def c_values(tmp_path_factory):
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip("no C compiler (gcc) on PATH")
    if not HEADERS[0].exists():
        pytest.skip("<linux/kvm.h> is not installed (linux-libc-dev)")
    text = _header_text()
    structs = sorted(n for n in _c_structs(text) if isinstance(getattr(uapi, n, None), type))
    lines = ['#include <stdio.h>', '#include <stddef.h>', '#include <linux/kvm.h>',
             'int main(void) {']
    for s in structs:
        lines.append(f'printf("sizeof {s} %zu\\n", sizeof(struct {s}));')
        for path, ftype, bitfield in _paths(getattr(uapi, s)):
            if bitfield or _is_newer(s, path):
                continue
            lines.append(f'printf("offsetof {s} {path} %zu\\n", offsetof(struct {s}, {path}));')
            if not (issubclass(ftype, ctypes.Array) and ftype._length_ == 0):
                lines.append(f'printf("sizeof {s}.{path} %zu\\n", '
                             f'sizeof(((struct {s} *)0)->{path}));')
    names = [n for n in dir(uapi) if n.startswith("KVM") and isinstance(getattr(uapi, n), int)]
    for n in sorted(set(names) - NOT_C_MACROS):
        lines += [f"#ifdef {n}", f'printf("value {n} %llu\\n", (unsigned long long)({n}));', "#endif"]
    lines.append('printf("value KVM_COALESCED_MMIO_MAX %zu\\n", (4096 - sizeof(struct kvm_coalesced_mmio_ring))'
                 ' / sizeof(struct kvm_coalesced_mmio));')
    lines += ["return 0;", "}"]
    tmp = tmp_path_factory.mktemp("uapi_c")
    (tmp / "probe.c").write_text("\n".join(lines) + "\n")
    build = subprocess.run([gcc, "-O0", "-w", "-o", str(tmp / "probe"), str(tmp / "probe.c")],
                           capture_output=True, text=True)
    if build.returncode != 0:
        pytest.fail("probe.c did not compile:\n" + build.stderr[-4000:])
    out = subprocess.run([str(tmp / "probe")], capture_output=True, text=True, check=True).stdout
    values = {}
    for line in out.splitlines():
        *key, value = line.split(" ")  # ("sizeof", s) / ("offsetof", s, path) / ("value", name)
        values[tuple(key)] = int(value)
    values[("_structs",)] = structs
    return values


def test_the_headers_declare_the_structs_a_teaching_vmm_uses(c_values):
    wanted = {"kvm_regs", "kvm_sregs", "kvm_run", "kvm_userspace_memory_region", "kvm_irqfd",
              "kvm_ioeventfd", "kvm_coalesced_mmio_ring", "kvm_cpuid2", "kvm_msrs", "kvm_stats_desc",
              "kvm_vcpu_events", "kvm_sync_regs", "kvm_irqchip", "kvm_sregs2", "kvm_xsave"}
    assert wanted <= set(c_values[("_structs",)])


def test_every_struct_size_matches_gcc(c_values):
    wrong = {s: (ctypes.sizeof(getattr(uapi, s)), c_values[("sizeof", s)]) for s in c_values[("_structs",)]
             if ctypes.sizeof(getattr(uapi, s)) != c_values[("sizeof", s)]}
    assert wrong == {}


def test_every_member_offset_and_size_matches_gcc(c_values):
    wrong, checked = {}, 0
    for s in c_values[("_structs",)]:
        cls = getattr(uapi, s)
        for path, ftype, bitfield in _paths(cls):
            if bitfield or _is_newer(s, path):
                continue
            ours = uapi.offsetof(cls, path)
            if ours != c_values[("offsetof", s, path)]:
                wrong[f"offsetof {s}.{path}"] = (ours, c_values[("offsetof", s, path)])
            if ("sizeof", f"{s}.{path}") in c_values and ctypes.sizeof(ftype) != c_values[("sizeof", f"{s}.{path}")]:
                wrong[f"sizeof {s}.{path}"] = (ctypes.sizeof(ftype), c_values[("sizeof", f"{s}.{path}")])
            checked += 1
    assert wrong == {}
    assert checked > 300


def test_every_ioctl_number_matches_the_headers(c_values):
    compared = {n: v for v, n in uapi.IOCTL_NAMES.items() if ("value", n) in c_values}
    wrong = {n: (hex(v), hex(c_values[("value", n)])) for n, v in compared.items()
             if c_values[("value", n)] != v}
    assert wrong == {}
    assert len(compared) >= 71  # every number of reference §1 / sizes.txt exists in 6.1


def test_every_constant_the_headers_define_has_their_value(c_values):
    names = [key[1] for key in c_values if key[0] == "value"]
    wrong = {n: (getattr(uapi, n), c_values[("value", n)]) for n in names
             if getattr(uapi, n) != c_values[("value", n)]}
    assert wrong == {}
    assert len(names) > 400
    assert "KVM_CAP_DIRTY_LOG_RING_ACQ_REL" in names and "KVM_EXIT_NOTIFY" in names
