"""The ``kvm`` fixture: every fact runs once per backend, "hw" (/dev/kvm) and "sim".

* ``KVMLAB_FACTS_BACKENDS`` (default ``"hw,sim"``) chooses the backends; a backend left
  out is skipped with that reason (used only to keep the tree green while the simulator
  is being built: the default stays "hw,sim").
* hw is skipped with :func:`kvmlab.hw.unusable_reason` where /dev/kvm is unusable.
* sim is skipped with the :class:`kvmlab.BackendUnavailable` message while
  ``kvmlab.open("sim")`` raises it.  If the simulator opens and a fact fails on it, that
  is a simulator bug: no test is marked xfail for sim wholesale.

Facts tagged [PVM] in the reference branch on the ``pvm`` fixture (True on hw when the
host's KVM vendor module is kvm_pvm): PVM hosts give the PVM value, every other backend
the upstream kvm-intel/kvm-amd value (the simulator follows upstream).
"""
from __future__ import annotations

import os
import sys

import pytest

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(os.path.dirname(_HERE))
try:  # pragma: no cover - only when kvmlab is not installed into the venv
    import kvmlab  # noqa: F401
except ImportError:  # pragma: no cover
    sys.path.insert(0, _ROOT)
if _HERE not in sys.path:   # factkit / modes: helpers shared by the fact modules
    sys.path.insert(0, _HERE)

import kvmlab  # noqa: E402
import factkit  # noqa: E402

ALL_BACKENDS = ("hw", "sim")


def selected_backends() -> list[str]:
    raw = os.environ.get("KVMLAB_FACTS_BACKENDS", "hw,sim")
    return [b.strip() for b in raw.split(",") if b.strip()]


def _open(name: str):
    if name not in selected_backends():
        pytest.skip(f"backend {name!r} is not in KVMLAB_FACTS_BACKENDS={os.environ.get('KVMLAB_FACTS_BACKENDS')!r}")
    if name == "hw":
        from kvmlab.hw import unusable_reason
        why = unusable_reason()
        if why:
            pytest.skip(why)
    try:
        return kvmlab.open(name)
    except kvmlab.BackendUnavailable as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session", params=ALL_BACKENDS)
def kvm(request):
    """A :class:`kvmlab.Kvm` (the system fd) on each backend."""
    k = _open(request.param)
    factkit.warm_up(k)
    yield k
    k.close()


@pytest.fixture
def pvm(kvm) -> bool:
    """True where the reference's [PVM] values apply: hw on a kvm_pvm host."""
    return factkit.is_pvm(kvm)


@pytest.fixture
def make_vm(kvm):
    """``make_vm()`` -> a new VmFd; every VM (and its vCPUs) is closed after the test."""
    vms = []

    def make(vm_type: int = 0):
        vm = kvm.create_vm(vm_type)
        vms.append(vm)
        return vm

    yield make
    for vm in vms:
        for v in list(vm.vcpus.values()):
            v.close()
        vm.close()


@pytest.fixture
def vm(make_vm):
    """A fresh, empty VM."""
    return make_vm()


@pytest.fixture
def eventfd():
    """``eventfd(initial=0, flags=0)`` -> an os.eventfd, closed after the test."""
    fds = []

    def make(initial: int = 0, flags: int = 0):
        fd = os.eventfd(initial, flags)
        fds.append(fd)
        return fd

    yield make
    for fd in fds:
        os.close(fd)
