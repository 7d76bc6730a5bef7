"""kvmlab.sim: a simulated Linux KVM kernel (the "sim" backend).

It answers the same ioctl request numbers with the same struct bytes, return values and
errno as ``/dev/kvm`` (see :mod:`kvmlab.backend`), and lets a learner look inside the
kernel objects the hardware hides (``vm.kernel``).  Modules are named after the kernel
files they model:

==================  ============================================================
kvm_main            virt/kvm/kvm_main.c: /dev/kvm, VM and vCPU file ops, dispatch
kvm_host            include/linux/kvm_host.h: struct kvm, struct kvm_vcpu, vm_list
memslots            memslot validation, moves, flags, dirty logging
iobus               struct kvm_io_bus (PIO and MMIO buses)
coalesced_mmio      virt/kvm/coalesced_mmio.c
eventfd             virt/kvm/eventfd.c: irqfd, ioeventfd
irqchip/            arch/x86/kvm/i8259.c, ioapic.c, lapic.c, irq_comm.c
x86                 arch/x86/kvm/x86.c: struct kvm_arch, the run loop
vendor              arch/x86/kvm/vmx/vmx.c, svm/svm.c: kvm_x86_ops
cpuid, msrs         arch/x86/kvm/cpuid.c, the MSR parts of x86.c
stats               virt/kvm/binary_stats.c: KVM_GET_STATS_FD
trace               include/trace/events/kvm.h: tracepoints
kernel_view         (kvmlab) the read-only struct kvm view behind ``vm.kernel``
==================  ============================================================

``kvmlab.open("sim", vendor="intel" | "amd")`` builds ``SimBackend(vendor=...)``.

Sim-only hooks on the backend: ``kernel_view(vm_fd)`` (``VmFd.kernel``), ``kick(vcpu_fd)``,
``hardware_exit_code(vcpu_fd)``, ``entry_failure_rule(vcpu_fd)``, ``set_deterministic(vm_fd)``,
``trace(fd)``, ``vm_list``.

Not modelled (the ioctls fail as on a kernel without them, and KVM_CHECK_EXTENSION says
so): KVM_GET/SET_PIT2, XSAVE/XCRS, SREGS2, KVM_ENABLE_CAP capabilities, the dirty ring,
TSC/clock control, SMM, split irqchip, x2APIC, TSC-deadline timer, userspace MSR exits,
x87/SSE register state (KVM_SET_FPU fails).  MOV CR8 does not reach an in-kernel LAPIC's
TPR.  Signals other than SIGINT end KVM_RUN only in the main thread and only where nobody
else owns Python's signal wakeup fd.
"""
from .kvm_main import SimBackend  # noqa: F401

__all__ = ["SimBackend"]
