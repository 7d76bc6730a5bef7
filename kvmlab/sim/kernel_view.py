"""(kvmlab) ``vm.kernel``: a read-only window on the live ``struct kvm`` of a simulated VM.

Every attribute is read from the kernel object when you ask for it, so it is always
current; what it returns is a snapshot (tuples, read-only mappings, plain values), so a
learner cannot change the kernel through it.  ``str(vm.kernel)`` prints the structure the
way a kernel hacker would sketch it: memslots, vCPUs, buses, eventfds, the coalesced
ring, irq routing, stats, arch state, users_count, the global vm_list, and which lock
guards which field.
"""
from __future__ import annotations

import types

from . import stats as S
from .iobus import BUS_NAMES, KVM_MMIO_BUS, KVM_PIO_BUS
from .kvm_host import kvm_lock, vm_list

LOCKS = types.MappingProxyType({
    "kvm_lock": "the global vm_list",
    "kvm->lock": "vcpus, created_vcpus, online_vcpus, bsp_vcpu_id, irqchip creation",
    "kvm->slots_lock": "memslots, pio_bus/mmio_bus registration, ioeventfds, coalesced zones",
    "kvm->irq_lock": "irq_routing and the in-kernel PIC/IOAPIC/LAPIC state",
    "kvm->irqfds.lock": "irqfds",
    "kvm->ring_lock": "the coalesced ring's last index",
    "vcpu->mutex": "every vCPU ioctl; KVM_RUN holds it while the guest runs",
})


class ReadOnly:
    """A read-only proxy for one kernel object (``struct kvm_memory_slot``, ``struct
    kvm_vcpu``, a bus range ...): attributes read through, assignments refused."""

    __slots__ = ("_o",)

    def __init__(self, o):
        object.__setattr__(self, "_o", o)

    def __getattr__(self, name):
        return getattr(self._o, name)

    def __setattr__(self, name, value):
        raise AttributeError("vm.kernel is read-only; change the VM through its ioctls")

    def __repr__(self):
        return repr(self._o)


class KernelView:
    """``struct kvm`` (read-only)."""

    __slots__ = ("_kvm",)

    def __init__(self, kvm):
        object.__setattr__(self, "_kvm", kvm)

    def __setattr__(self, name, value):
        raise AttributeError("vm.kernel is a read-only view of struct kvm; change the VM "
                             "through its ioctls (VmFd / VcpuFd methods)")

    # -- fields ---------------------------------------------------------------------------
    @property
    def memslots(self):
        """The memslots, sorted by guest physical address."""
        return tuple(ReadOnly(s) for s in self._kvm.memslots.by_gpa())

    @property
    def memslots_generation(self):
        return self._kvm.memslots.generation

    @property
    def vcpus(self):
        """``struct kvm_vcpu`` per vcpu_idx (creation order)."""
        return tuple(ReadOnly(v) for v in self._kvm.vcpus())

    @property
    def online_vcpus(self):
        return self._kvm.online_vcpus

    @property
    def created_vcpus(self):
        return self._kvm.created_vcpus

    @property
    def max_vcpus(self):
        return self._kvm.max_vcpus

    @property
    def bsp_vcpu_id(self):
        return self._kvm.bsp_vcpu_id

    @property
    def pio_bus(self):
        return tuple(ReadOnly(r) for r in self._kvm.buses[KVM_PIO_BUS].range)

    @property
    def mmio_bus(self):
        return tuple(ReadOnly(r) for r in self._kvm.buses[KVM_MMIO_BUS].range)

    @property
    def irqfds(self):
        return tuple(ReadOnly(i) for i in self._kvm.irqfds.items)

    @property
    def ioeventfds(self):
        return tuple(ReadOnly(i) for i in self._kvm.ioeventfds)

    @property
    def coalesced_zones(self):
        return tuple(ReadOnly(z) for z in self._kvm.coalesced_zones)

    @property
    def coalesced_ring(self):
        """``(first, last, outstanding)`` of the VM's coalesced MMIO/PIO ring."""
        w = self._kvm.coalesced_mmio_ring[:8].view("<u4")
        first, last = int(w[0]), int(w[1])
        return first, last, (last - first) % 170 if last < 170 else 0

    @property
    def irq_routing(self):
        r = self._kvm.irq_routing
        if not r:
            return types.MappingProxyType({})
        return types.MappingProxyType({gsi: tuple(es) for gsi, es in sorted(r.items())})

    @property
    def stat(self):
        """``struct kvm_vm_stat`` (name -> value)."""
        return types.MappingProxyType(S.as_dict(self._kvm.stat, S.VM_STATS_STORAGE))

    def vcpu_stat(self, vcpu_id):
        v = self._kvm.get_vcpu_by_id(vcpu_id)
        if v is None:
            raise KeyError(f"no vCPU {vcpu_id} in this VM")
        v.arch.sync_core_stats()
        return types.MappingProxyType(S.as_dict(v.stat, S.VCPU_STATS_STORAGE))

    def vcpu_tlb(self, vcpu_id):
        """The TLB of the simulated CPU that runs vCPU ``vcpu_id``: a snapshot
        (:class:`kvmlab.cpu.core.TlbView`) with the cached translations (``entries``,
        ``lookup(linear)``: linear 4 KiB page -> guest-physical page, W/U/NX/D/G), the
        ``hits``/``misses`` counters, ``flushes_by_cause`` (MOV to CR3, CR0/CR4/EFER paging
        changes, memslot changes, INVLPG) and ``last_flush`` / ``last_flush_rip``.  It has
        256 entries, direct-mapped on linear-address bits 19:12, so two pages 1 MiB apart
        share an entry and evict each other.

        Simulator only, and not part of KVM: a real CPU's TLB is invisible to software (not
        even the kernel can list it; only its effects and the flush instructions exist).
        Nor is it KVM's MMU: ``vcpu->arch.mmu`` (``arch/x86/kvm/mmu/``) builds the shadow or
        TDP (EPT/NPT) *page tables* for stage 2; the hardware then caches translations from
        them in its TLB, like this one caches the guest's walks."""
        v = self._kvm.get_vcpu_by_id(vcpu_id)
        if v is None:
            raise KeyError(f"no vCPU {vcpu_id} in this VM")
        return v.arch.core.tlb()

    @property
    def arch(self):
        """``struct kvm_arch``: the x86 part."""
        a = self._kvm.arch
        return types.MappingProxyType({
            "kvm_x86_ops": repr(a.ops),
            "tss_addr": a.tss_addr,
            "ept_identity_map_addr": a.ept_identity_map_addr,
            "irqchip_mode": ("none", "kernel", "split")[a.irqchip_mode],
            "vpic": repr(a.vpic) if a.vpic is not None else None,
            "vioapic": repr(a.vioapic) if a.vioapic is not None else None,
            "vpit": repr(a.vpit) if a.vpit is not None else None,
        })

    @property
    def users_count(self):
        return self._kvm.users_count

    @property
    def vm_list(self):
        """The global vm_list: every live struct kvm of this process."""
        with kvm_lock:
            return tuple(KernelView(k) for k in vm_list)

    @property
    def locks(self):
        """Which lock guards what."""
        return LOCKS

    @property
    def trace(self):
        """The VM's tracepoints (``trace.enable()``, iterate, ``str()``).  Turning tracing on
        and off is allowed: it does not change the VM."""
        return self._kvm.trace

    # -- text ---------------------------------------------------------------------------
    def __str__(self):
        k = self._kvm
        out = [f"struct kvm {k.stats_id}  (users_count={k.users_count}, "
               f"{len(self.vm_list)} VM(s) on vm_list)",
               f"  arch: {self.arch['kvm_x86_ops']}, irqchip={self.arch['irqchip_mode']}, "
               f"tss_addr={k.arch.tss_addr:#x}, bsp_vcpu_id={k.bsp_vcpu_id}",
               f"  memslots (generation {k.memslots.generation}):"]
        out += [f"    {s!r}" for s in self.memslots] or ["    (none)"]
        out.append(f"  vcpus: online_vcpus={k.online_vcpus} created_vcpus={k.created_vcpus} "
                   f"max_vcpus={k.max_vcpus}")
        for v in k.vcpus():
            a = v.arch
            mp = ("RUNNABLE", "UNINITIALIZED", "INIT_RECEIVED", "HALTED",
                  "SIPI_RECEIVED")[a.mp_state] if a.mp_state < 5 else a.mp_state
            out.append(f"    vcpu {v.vcpu_id} (idx {v.vcpu_idx}): rip={int(a.st[16]) & (2**64-1):#x} "
                       f"mp_state={mp} exits={int(v.stat[S.EXITS])}"
                       + (f" {a.apic!r}" if a.apic is not None else ""))
        for idx in (KVM_PIO_BUS, KVM_MMIO_BUS):
            bus = k.buses[idx]
            out.append(f"  {BUS_NAMES[idx]}: {bus.dev_count} device(s)")
            out += [f"    {r!r}" for r in bus.range[:20]]
            if bus.dev_count > 20:
                out.append(f"    ... {bus.dev_count - 20} more")
        out.append(f"  irqfds: {len(k.irqfds.items)}")
        out += [f"    {i!r}" for i in k.irqfds.items]
        out.append(f"  ioeventfds: {len(k.ioeventfds)}")
        out += [f"    {i!r}" for i in k.ioeventfds]
        first, last, n = self.coalesced_ring
        out.append(f"  coalesced_mmio: {len(k.coalesced_zones)} zone(s), ring first={first} "
                   f"last={last} outstanding={n}")
        if k.irq_routing:
            out.append(f"  irq_routing: {len(k.irq_routing)} GSIs "
                       "(0-15 -> PIC + IOAPIC, 16-23 -> IOAPIC)")
        nz = {n: v for n, v in self.stat.items() if v}
        out.append(f"  stat: {nz if nz else 'all 0'}")
        out.append("  locks:")
        out += [f"    {name:17} guards {what}" for name, what in LOCKS.items()]
        return "\n".join(out)

    def __repr__(self):
        return f"<struct kvm {self._kvm.stats_id} (read-only view; print() it)>"

    def __eq__(self, other):
        return isinstance(other, KernelView) and other._kvm is self._kvm

    def __hash__(self):
        return id(self._kvm)
