"""Benchmarks through the public API, the same code for every backend."""
from __future__ import annotations

import time

import kvmlab
from ..asm import assemble


def _real_mode_vcpu(kvm, code: bytes, mem_size=0x10000):
    vm = kvm.create_vm()
    mem = kvmlab.GuestMemory(mem_size)
    vm.set_user_memory_region(0, 0, mem)
    mem.write(0x1000, code)
    vcpu = vm.create_vcpu(0)
    s = vcpu.get_sregs()
    for seg in (s.cs, s.ds, s.es, s.ss):
        seg.base, seg.selector = 0, 0
    vcpu.set_sregs(s)
    vcpu.set_regs(rip=0x1000, rflags=2, rsp=0x8000)
    return vm, mem, vcpu


PIO_LOOP = assemble(".code16\n1: out 0x80, al\n jmp 1b\n", base=0x1000).code
MMIO_LOOP = assemble(".code16\n mov ax, 0x2000\n mov ds, ax\n1: mov byte ptr [0], al\n jmp 1b\n", base=0x1000).code


def pio_exits_per_s(backend: str, n: int) -> float:
    """OUT exits per second through ``VcpuFd.run()`` in a Python loop."""
    kvm = kvmlab.open(backend)
    vm, mem, vcpu = _real_mode_vcpu(kvm, PIO_LOOP)
    run = vcpu.run
    t = time.perf_counter()
    for _ in range(n):
        run()
    return n / (time.perf_counter() - t)


def mmio_exits_per_s(backend: str, n: int) -> float:
    """MMIO write exits per second through ``VcpuFd.run()`` in a Python loop."""
    kvm = kvmlab.open(backend)
    vm, mem, vcpu = _real_mode_vcpu(kvm, MMIO_LOOP)
    run = vcpu.run
    t = time.perf_counter()
    for _ in range(n):
        run()
    return n / (time.perf_counter() - t)


def coalesced_writes_per_s(backend: str, n: int) -> float:
    """Guest MMIO writes per second into a coalesced zone, the VMM draining the ring at
    every exit (a full ring makes the write exit as ordinary MMIO)."""
    kvm = kvmlab.open(backend)
    src = f""".code16
    mov ax, 0x2000
    mov ds, ax
    mov ecx, {n}
1:  mov byte ptr [0], al
    dec ecx
    jnz 1b
    out 0xf4, al
    hlt
"""
    vm, mem, vcpu = _real_mode_vcpu(kvm, assemble(src, base=0x1000).code)
    vm.register_coalesced_mmio(0x20000, 0x1000)
    ring = vcpu.coalesced_ring
    writes = 0
    t = time.perf_counter()
    while True:
        e = vcpu.run()
        writes += len(ring.drain_array())
        if e.reason == kvmlab.KVM_EXIT_MMIO:
            writes += 1
            continue
        break
    dt = time.perf_counter() - t
    assert writes == n, (writes, n)
    return n / dt


def create_ms(backend: str, mem_size: int = 256 << 20) -> float:
    """Milliseconds to create a VM with one memslot of ``mem_size`` and one vCPU."""
    kvm = kvmlab.open(backend)
    mem = kvmlab.GuestMemory(mem_size)
    t = time.perf_counter()
    vm = kvm.create_vm()
    vm.set_user_memory_region(0, 0, mem)
    vcpu = vm.create_vcpu(0)
    dt = time.perf_counter() - t
    vcpu.close()
    vm.close()
    return dt * 1e3
