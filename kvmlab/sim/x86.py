"""arch/x86/kvm/x86.c: ``struct kvm_arch``, ``struct kvm_vcpu_arch``, the x86 VM and vCPU
ioctls, and the run loop (``kvm_arch_vcpu_ioctl_run`` -> ``vcpu_run`` -> ``vcpu_enter_guest``).

The vCPU's architectural state (registers, control registers, MSRs, the TLB) lives in the
CPU core (:mod:`kvmlab.cpu`), the simulated silicon; KVM reads and writes it the way it
reads and writes the VMCS/VMCB.  The run loop enters the core for a bounded number of
instructions, handles in the kernel whatever the kernel handles (ioeventfds, coalesced
writes, the in-kernel irqchip's PIO/MMIO, HLT with an in-kernel LAPIC), and otherwise
fills the ``kvm_run`` page and returns to userspace.
"""
from __future__ import annotations

import errno
import struct
import threading

from .. import uapi as U
from . import stats as S
from .memslots import KVM_MR_DELETE

KVM_IRQCHIP_NONE, KVM_IRQCHIP_KERNEL, KVM_IRQCHIP_SPLIT = 0, 1, 2
DEFAULT_IDENTITY_MAP_ADDR = 0xFFFBC000


def arch_caps():
    """x86 ``kvm_vm_ioctl_check_extension``: what the simulated kernel implements."""
    from . import irqchip as _irqchip
    caps = {
        U.KVM_CAP_HLT: 1,
        U.KVM_CAP_MP_STATE: 1,
        U.KVM_CAP_USER_NMI: 1,
        U.KVM_CAP_SET_GUEST_DEBUG: 1,
        U.KVM_CAP_SYNC_REGS: U.KVM_SYNC_X86_VALID_FIELDS,
        U.KVM_CAP_IMMEDIATE_EXIT: 1,
        U.KVM_CAP_SET_GUEST_DEBUG2: (U.KVM_GUESTDBG_ENABLE | U.KVM_GUESTDBG_SINGLESTEP |
                                     U.KVM_GUESTDBG_USE_SW_BP | U.KVM_GUESTDBG_USE_HW_BP |
                                     U.KVM_GUESTDBG_INJECT_DB | U.KVM_GUESTDBG_INJECT_BP |
                                     U.KVM_GUESTDBG_BLOCKIRQ),
    }
    if _irqchip.AVAILABLE:
        caps.update({U.KVM_CAP_IRQCHIP: 1, U.KVM_CAP_IRQ_INJECT_STATUS: 1,
                     U.KVM_CAP_IRQFD_RESAMPLE: 1, U.KVM_CAP_IRQ_ROUTING: 4096})
    return caps


class KvmArch:
    """``struct kvm_arch``: the x86 part of struct kvm."""

    def __init__(self, kvm, ops):
        self.kvm = kvm
        self.ops = ops                       # kvm_x86_ops (vmx or svm flavour)
        self.tss_addr = 0
        self.ept_identity_map_addr = DEFAULT_IDENTITY_MAP_ADDR
        self.bsp_vcpu_id = 0
        self.irqchip_mode = KVM_IRQCHIP_NONE
        self.vpic = None                     # struct kvm_pic (i8259 pair)
        self.vioapic = None                  # struct kvm_ioapic
        self.deterministic = False
        self.physmap = None                  # the core's PhysMap: the "EPT/NPT" of this VM
        self.resamplers = []

    # -- helpers -------------------------------------------------------------------------
    def irqchip_in_kernel(self):
        return self.irqchip_mode != KVM_IRQCHIP_NONE

    def _pm(self):
        if self.physmap is None:
            from .. import cpu
            self.physmap = cpu.PhysMap()
            # replay the current memslots into the new map
            for s in self.kvm.memslots.id_hash.values():
                self._set_slot(s)
            self.update_coalesced()
        return self.physmap

    def _set_slot(self, s):
        pm = self.physmap
        if s.host is None:
            return
        pm.set_slot(s.id, s.guest_phys_addr, s.host, bool(s.flags & U.KVM_MEM_READONLY),
                    s.dirty_bitmap)

    # -- memslots: kvm_arch_commit_memory_region ------------------------------------------
    def commit_memory_region(self, old, new, change):
        pm = self.physmap
        if pm is None:
            return
        if old is not None:
            pm.delete_slot(old.id)
        if new is not None:
            self._set_slot(new)
        for v in self.kvm.vcpu_array.values():
            v.arch.request_tlb_flush()

    def update_coalesced(self):
        pm = self.physmap
        if pm is None:
            return
        zones = [(d.addr, d.size, d.pio) for d in self.kvm.coalesced_zones]
        pm.set_coalesced(zones, self.kvm.coalesced_mmio_ring)

    # -- VM ioctls (kvm_arch_vm_ioctl) ---------------------------------------------------
    def set_tss_addr(self, arg):
        addr = arg & 0xFFFFFFFFFFFFFFFF if isinstance(arg, int) else -1
        if addr < 0 or addr > 0xFFFFFFFF - 3 * 4096 + 1:
            raise OSError(errno.EINVAL, f"KVM_SET_TSS_ADDR {addr:#x}: the 3-page TSS region "
                                        "must lie below 4 GiB (e.g. 0xfffbd000)")
        self.tss_addr = addr
        return 0

    def set_identity_map_addr(self, arg):
        from .kvm_main import user_buf
        b = user_buf(arg, 8, "KVM_SET_IDENTITY_MAP_ADDR")
        addr = struct.unpack_from("<Q", b, 0)[0]
        with self.kvm.lock:
            if self.kvm.created_vcpus:
                raise OSError(errno.EINVAL, "KVM_SET_IDENTITY_MAP_ADDR must come before the "
                                            "first KVM_CREATE_VCPU")
            self.ept_identity_map_addr = addr
        return 0

    def set_boot_cpu_id(self, arg):
        from .kvm_host import KVM_MAX_VCPU_IDS
        with self.kvm.lock:
            if self.kvm.created_vcpus:
                raise OSError(errno.EBUSY, "KVM_SET_BOOT_CPU_ID must come before the first "
                                           "KVM_CREATE_VCPU")
            val = arg & 0xFFFFFFFFFFFFFFFF
            if val > KVM_MAX_VCPU_IDS:
                raise OSError(errno.EINVAL, f"boot CPU id {val} is out of range (0..4095)")
            self.bsp_vcpu_id = val
        return 0

    def create_irqchip(self, arg):
        from . import irqchip
        with self.kvm.lock:
            if self.irqchip_in_kernel():
                raise OSError(errno.EEXIST, "this VM already has an in-kernel irqchip")
            if self.kvm.created_vcpus:
                raise OSError(errno.EINVAL, "KVM_CREATE_IRQCHIP must come before the first "
                                            "KVM_CREATE_VCPU")
            irqchip.kvm_create_irqchip(self.kvm)
            self.irqchip_mode = KVM_IRQCHIP_KERNEL
        return 0

    def _irq_level(self, arg, what):
        from .kvm_main import user_buf
        if not self.irqchip_in_kernel():
            raise OSError(errno.ENXIO, f"{what} needs an in-kernel irqchip; call "
                                       "KVM_CREATE_IRQCHIP first (or inject with KVM_INTERRUPT)")
        b = user_buf(arg, 8, what)
        irq, level = struct.unpack_from("<II", b, 0)
        return b, irq, level

    def irq_line(self, arg):
        b, irq, level = self._irq_level(arg, "KVM_IRQ_LINE")
        self.kvm.set_irq(0, irq, level)
        return 0

    def irq_line_status(self, arg):
        b, irq, level = self._irq_level(arg, "KVM_IRQ_LINE_STATUS")
        status = self.kvm.set_irq(0, irq, level)
        struct.pack_into("<i", b, 0, status)
        return 0

    def get_irqchip(self, arg):
        from . import irqchip
        from .kvm_main import user_buf
        if self.irqchip_mode != KVM_IRQCHIP_KERNEL:
            raise OSError(errno.ENXIO, "KVM_GET_IRQCHIP needs an in-kernel irqchip "
                                       "(KVM_CREATE_IRQCHIP)")
        return irqchip.get_irqchip(self.kvm, user_buf(arg, 520, "KVM_GET_IRQCHIP"))

    def set_irqchip(self, arg):
        from . import irqchip
        from .kvm_main import user_buf
        if self.irqchip_mode != KVM_IRQCHIP_KERNEL:
            raise OSError(errno.ENXIO, "KVM_SET_IRQCHIP needs an in-kernel irqchip "
                                       "(KVM_CREATE_IRQCHIP)")
        return irqchip.set_irqchip(self.kvm, user_buf(arg, 520, "KVM_SET_IRQCHIP"))

    # -- interrupts --------------------------------------------------------------------------
    def set_irq(self, source, gsi, level):
        if not self.irqchip_in_kernel():
            return -1
        from . import irqchip
        return irqchip.kvm_set_irq(self.kvm, source, gsi, level)

    def register_resampler(self, irqfd):
        with self.kvm.irq_lock:
            self.resamplers.append(irqfd)

    def unregister_resampler(self, irqfd):
        with self.kvm.irq_lock:
            if irqfd in self.resamplers:
                self.resamplers.remove(irqfd)

    # -- vcpus ---------------------------------------------------------------------------
    def vcpu_postcreate(self, vcpu):
        pass

    def destroy(self):
        for v in list(self.kvm.vcpu_array.values()):
            v.arch.destroy()


class KvmVcpuArch:
    """``struct kvm_vcpu_arch``: the x86 part of struct kvm_vcpu."""

    def __init__(self, vcpu):
        self.vcpu = vcpu
        self.kvm = vcpu.kvm
        self.core = None                      # the CPU core ("the silicon"), created lazily
        self.cpuid_entries = []               # KVM_SET_CPUID2 table
        self.has_run = False                  # kvm_vcpu_has_run()
        self.mp_state = U.KVM_MP_STATE_RUNNABLE
        self.apic = None                      # struct kvm_lapic (in-kernel irqchip only)
        self.last_hw_exit = None              # vendor exit code of the last exit
        self.kicked = False
        self.wake = threading.Event()         # the vCPU's wait queue (rcuwait)

    def request_tlb_flush(self):
        self.vcpu.requests |= 1               # KVM_REQ_TLB_FLUSH

    def kick(self):
        self.kicked = True
        self.wake.set()

    def destroy(self):
        self.kick()

    # -- ioctls that do not need the core -----------------------------------------------
    def get_mp_state(self, arg):
        from .kvm_main import user_buf
        b = user_buf(arg, 4, "KVM_GET_MP_STATE")
        state = self.mp_state if self.kvm.arch.irqchip_in_kernel() else U.KVM_MP_STATE_RUNNABLE
        struct.pack_into("<I", b, 0, state)
        return 0

    def set_cpuid2(self, arg):
        from . import cpuid
        from .kvm_main import user_buf
        b = user_buf(arg, 8, "KVM_SET_CPUID2")
        nent = struct.unpack_from("<I", b, 0)[0]
        if nent > cpuid.KVM_MAX_CPUID_ENTRIES:
            raise OSError(errno.E2BIG, f"kvm_cpuid2.nent={nent}: at most "
                          f"{cpuid.KVM_MAX_CPUID_ENTRIES} entries")
        if len(b) < 8 + 40 * nent:
            raise OSError(errno.EFAULT, f"kvm_cpuid2.nent={nent} but the buffer is shorter; "
                                        "size it with kvm_cpuid2_with(n)")
        entries = cpuid.unpack_entries(b, nent)
        if self.has_run:
            if entries == self.cpuid_entries:
                return 0
            raise OSError(errno.EINVAL, "KVM_SET_CPUID2 after the first KVM_RUN may not change "
                                        "the CPUID table; set it before running the vCPU")
        self.cpuid_entries = entries
        if self.core is not None:
            self.core.set_cpuid(entries)
        return 0

    def get_cpuid2(self, arg):
        from . import cpuid
        from .kvm_main import user_buf
        b = user_buf(arg, 8, "KVM_GET_CPUID2")
        nent = struct.unpack_from("<I", b, 0)[0]
        if nent < len(self.cpuid_entries):
            raise OSError(errno.E2BIG, f"KVM_GET_CPUID2: nent={nent} is smaller than the "
                          f"{len(self.cpuid_entries)} entries set; retry with a larger buffer")
        b[8:8 + 40 * len(self.cpuid_entries)] = cpuid.pack_entries(self.cpuid_entries)
        struct.pack_into("<I", b, 0, len(self.cpuid_entries))
        return 0

    def kvm_arch_vcpu_ioctl_run(self):
        raise OSError(errno.ENOSYS, "KVM_RUN needs the CPU core (kvmlab.cpu), which is not "
                                    "built yet in this checkout")
