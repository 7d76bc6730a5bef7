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

import numpy as np

from .. import uapi as U
from ..cpu import layout as L
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
        U.KVM_CAP_VCPU_EVENTS: 1,
        U.KVM_CAP_DEBUGREGS: 1,
        U.KVM_CAP_INTERNAL_ERROR_DATA: 1,
        U.KVM_CAP_SYNC_REGS: U.KVM_SYNC_X86_VALID_FIELDS,
        U.KVM_CAP_IMMEDIATE_EXIT: 1,
        U.KVM_CAP_SET_GUEST_DEBUG2: (U.KVM_GUESTDBG_ENABLE | U.KVM_GUESTDBG_SINGLESTEP |
                                     U.KVM_GUESTDBG_USE_SW_BP | U.KVM_GUESTDBG_USE_HW_BP |
                                     U.KVM_GUESTDBG_INJECT_DB | U.KVM_GUESTDBG_INJECT_BP |
                                     U.KVM_GUESTDBG_BLOCKIRQ),
    }
    if _irqchip.AVAILABLE:
        caps.update({U.KVM_CAP_IRQCHIP: 1, U.KVM_CAP_IRQ_INJECT_STATUS: 1,
                     U.KVM_CAP_IRQFD_RESAMPLE: 1, U.KVM_CAP_IRQ_ROUTING: 4096,
                     U.KVM_CAP_SIGNAL_MSI: 1, U.KVM_CAP_PIT2: 1})
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
        self.vpit = None                     # struct kvm_pit (KVM_CREATE_PIT2)
        self.deterministic = False
        self.physmap = None                  # the core's PhysMap: the "EPT/NPT" of this VM
        self.resamplers = []
        self.devmask = 0                     # which buses have devices (the run loop's fast path)
        self.no_backed_memory = False        # slots exist but none is memory kvmlab knows
        self.unbacked = []                   # slots whose userspace_addr kvmlab cannot reach

    def update_devmask(self):
        from .kvm_run import DEV_APIC, DEV_MMIO, DEV_PIO, DEV_UNBACKED
        from .iobus import KVM_MMIO_BUS, KVM_PIO_BUS
        b = self.kvm.buses
        self.devmask = ((DEV_PIO if b[KVM_PIO_BUS].dev_count else 0) |
                        (DEV_MMIO if b[KVM_MMIO_BUS].dev_count or self.unbacked else 0) |
                        (DEV_UNBACKED if self.unbacked else 0) |
                        (DEV_APIC if self.irqchip_in_kernel() else 0))

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
        try:
            pm.set_slot(s.id, s.guest_phys_addr, s.host, bool(s.flags & U.KVM_MEM_READONLY),
                        s.dirty_bitmap)
        except ValueError as e:
            raise OSError(errno.ENOSPC, f"the simulated CPU cannot map this slot ({e}); it "
                          f"holds at most {L.PM_MAXSLOTS} memslots") from None

    # -- memslots: kvm_arch_commit_memory_region ------------------------------------------
    def commit_memory_region(self, old, new, change):
        slots = self.kvm.memslots.id_hash.values()
        self.no_backed_memory = bool(slots) and all(s.host is None for s in slots)
        self.unbacked = [s for s in slots if s.host is None]
        self.update_devmask()
        pm = self.physmap
        if pm is None:
            return
        if old is not None and old.host is not None:
            pm.delete_slot(old.id)            # an unbacked slot was never given to the core
        if new is not None:
            self._set_slot(new)
        for v in self.kvm.vcpu_array.values():
            v.arch.request_tlb_flush()
        if old is not None:
            # kvm_flush_remote_tlbs: deleting or moving a slot zaps its translations
            from . import stats as _S
            self.kvm.stat[_S.VM_STAT["remote_tlb_flush"]] += 1
            self.kvm.stat[_S.VM_STAT["remote_tlb_flush_requests"]] += 1

    def update_coalesced(self):
        pm = self.physmap
        if pm is None:
            return
        # the core coalesces up to PM_MAXZONES zones itself (those where it decides like the
        # kernel's io bus, see coalesced_mmio.core_zones); writes to any other zone reach the
        # kernel's io bus, whose coalesced_mmio devices append to the same ring
        from .coalesced_mmio import core_zones
        zones = core_zones(self.kvm, L.PM_MAXZONES)
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
            self.update_devmask()
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

    def create_pit2(self, arg):
        """KVM_CREATE_PIT2: the in-kernel 8254 (needs the in-kernel PIC)."""
        from .irqchip.i8254 import KVM_PIT_BASE_ADDRESS, KVM_PIT_SPEAKER_DUMMY, KvmPit
        from .iobus import KVM_PIO_BUS, kvm_io_bus_register_dev
        from .kvm_main import user_buf
        b = user_buf(arg, 64, "KVM_CREATE_PIT2")
        flags = struct.unpack_from("<I", b, 0)[0]
        with self.kvm.lock:
            if self.vpit is not None:
                raise OSError(errno.EEXIST, "this VM already has an in-kernel PIT")
            if self.vpic is None:
                raise OSError(errno.ENOENT, "KVM_CREATE_PIT2 needs the in-kernel PIC; call "
                                            "KVM_CREATE_IRQCHIP first")
            pit = KvmPit(self.kvm, flags)
            with self.kvm.slots_lock:
                kvm_io_bus_register_dev(self.kvm, KVM_PIO_BUS, KVM_PIT_BASE_ADDRESS, 4, pit)
                if flags & KVM_PIT_SPEAKER_DUMMY:
                    kvm_io_bus_register_dev(self.kvm, KVM_PIO_BUS, 0x61, 1, pit)
            self.vpit = pit
        return 0

    def set_gsi_routing(self, arg):
        from .irqchip.irq_comm import kvm_set_irq_routing
        from .kvm_main import user_buf
        b = user_buf(arg, 8, "KVM_SET_GSI_ROUTING")
        return kvm_set_irq_routing(self.kvm, b)

    def signal_msi(self, arg):
        """KVM_SIGNAL_MSI: >0 delivered, 0 blocked by the guest; no destination -> EPERM
        (the kernel returns -1)."""
        from .irqchip.irq_comm import KVM_MSI_VALID_DEVID, kvm_set_msi
        from .kvm_main import user_buf
        b = user_buf(arg, 32, "KVM_SIGNAL_MSI")
        lo, hi, data, flags = struct.unpack_from("<IIII", b, 0)
        if not self.irqchip_in_kernel() or flags & ~KVM_MSI_VALID_DEVID:
            raise OSError(errno.EINVAL, "KVM_SIGNAL_MSI needs an in-kernel irqchip and "
                                        "kvm_msi.flags 0 or KVM_MSI_VALID_DEVID")
        with self.kvm.irq_lock:
            r = kvm_set_msi(self.kvm, lo, data)
        if r < 0:
            raise OSError(errno.EPERM, f"no LAPIC matches the MSI destination "
                                       f"{(lo >> 12) & 0xFF} (KVM returns -1)")
        return r

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

    def ack_irq(self, gsi):
        """Ack notifiers: a resampling irqfd on ``gsi`` de-asserts its line and signals its
        resamplefd so the device model can re-assert if it still needs service."""
        fired = [r for r in self.resamplers if r.gsi == gsi]
        for r in fired:
            self.kvm.set_irq(1, gsi, 0)
            r.resamplefd.signal(1)

    def kick_bsp(self):
        for v in self.kvm.vcpu_array.values():
            if v.vcpu_id == self.bsp_vcpu_id:
                v.arch.kvm_vcpu_kick_event()

    # -- vcpus ---------------------------------------------------------------------------
    def vcpu_postcreate(self, vcpu):
        pass

    def destroy(self):
        for v in list(self.kvm.vcpu_array.values()):
            v.arch.destroy()


class KvmVcpuArch:
    """``struct kvm_vcpu_arch``: the x86 part of struct kvm_vcpu, and its ioctls."""

    BUDGET = 200_000            # instructions per entry before KVM looks at signals/kicks
    BUDGET_IRQCHIP = 20_000     # shorter with an in-kernel irqchip (timers, irqfds)

    def __init__(self, vcpu):
        from .. import cpu
        from .kvm_run import LAY
        self.vcpu = vcpu
        self.kvm = kvm = vcpu.kvm
        self.ops = kvm.arch.ops
        pm = kvm.arch._pm()
        self.core = cpu.Core(pm, vcpu.vcpu_id)
        # guest_cpu_cap_has(GBPAGES): the guest's CPUID bit only counts where KVM supports it
        from .cpuid import F81_EDX
        self.core.gbpages_supported = bool(F81_EDX >> 26 & 1)
        self.st = self.core.state
        self.pm_arr = pm.pm
        self.page = vcpu.run_buf                        # the whole 3-page mapping (uint8)
        self.mv = memoryview(vcpu.run_map).cast("B")
        self.mv64 = self.mv[:4096].cast("Q")
        self.last_code = None
        self.lay = vcpu.statbuf                 # layout table + stats (see kvm_run)
        # the run loop's hot path: one int (the address of ctx) reaches the compiled code
        # instead of four arrays; stv/pmv read single words without numpy's scalar cost
        from .kvm_run import make_ctx
        self.ctx = make_ctx(self.st, self.pm_arr, self.page, self.lay)
        self.ctx_addr = int(self.ctx.ctypes.data)
        self.stv = memoryview(self.st)
        self.pmv = memoryview(self.pm_arr)
        self.cpuid_entries = []
        self.has_run = False
        self.pending = 0                                # 1 IN, 2 MMIO read awaiting the VMM
        self.rep_tail = None                            # rip of a REP INS/OUTS left at rcx=0
        self.check_entry = True                         # state changed by userspace
        self.nmi_pending = False
        self.apic = None
        self.mp_state = U.KVM_MP_STATE_RUNNABLE
        self.kicked = False
        self.sig = False            # signals.pending() works in this KVM_RUN (main thread)
        self.wake = threading.Event()
        self.parked = None          # deterministic mode: errno (0 = an exit) waiting for KVM_RUN
        self.waiting_user = False   # its last exit went to userspace and it was not re-entered
        self.guest_debug = 0
        self.mce = {self.MCG_CAP: 32, self.MCG_STATUS: 0, self.MCG_CTL: 0}
        if kvm.arch.irqchip_in_kernel():
            from .irqchip.lapic import KvmLapic
            self.apic = KvmLapic(vcpu)
            if vcpu.vcpu_id != kvm.arch.bsp_vcpu_id:
                self.mp_state = U.KVM_MP_STATE_UNINITIALIZED
        self._fix_reset_state()

    # -- helpers ----------------------------------------------------------------------------
    def _fix_reset_state(self):
        """What kvm_vcpu_reset sets beyond the core's power-on state."""
        st = self.st
        bsp = self.vcpu.vcpu_id == self.kvm.arch.bsp_vcpu_id
        st[L.M_APIC_BASE] = 0xFEE00000 | 0x800 | (0x100 if bsp else 0)
        eax1 = next((e[3] for e in self.cpuid_entries if e[0] == 1), None)
        st[L.RDX] = 0x600 if eax1 is None else eax1

    def apic_base(self):
        return int(self.st[L.M_APIC_BASE])

    def sync_core_stats(self):
        """Copy the counters the CPU core keeps (guest page faults, TLB flushes, INVLPG)
        into ``struct kvm_vcpu_stat``.  The sim has no shadow MMU: every page fault the core
        raises is a guest #PF, so pf_taken = pf_guest."""
        cs = self.st[L.STAT:L.STAT + L.STAT_N]
        stat = self.vcpu.stat
        stat[S.PF_GUEST] = cs[L.ST_PF]
        stat[S.PF_TAKEN] = cs[L.ST_PF]
        stat[S.TLB_FLUSH] = cs[L.ST_TLB_FLUSH]
        stat[S.INVLPG] = cs[L.ST_INVLPG]

    def request_tlb_flush(self):
        self.vcpu.requests |= 1

    def kick(self):
        """A signal for the vCPU thread: KVM_RUN returns EINTR / KVM_EXIT_INTR."""
        self.kicked = True
        self.wake.set()

    def kvm_vcpu_kick_event(self):
        """``kvm_vcpu_kick`` after KVM_REQ_EVENT: re-evaluate interrupts (no userspace exit)."""
        self.wake.set()
        if self.kvm.arch.deterministic:
            for v in self.kvm.vcpu_array.values():     # the scheduler sleeps on any vCPU
                v.arch.wake.set()

    def destroy(self):
        self.kick()

    def _user(self, arg, size, what):
        from .kvm_main import user_buf
        return user_buf(arg, size, what)

    def _event_name(self, code):
        if code == L.EXIT_DEBUG:
            return "debug" if int(self.st[L.DBG_EXC]) == 3 else "singlestep"
        return _EVENT.get(code, "intr")

    @property
    def last_hw_exit(self):
        """The vendor's exit code for the last exit (VMX exit reason / SVM exit code)."""
        code = self.last_code
        if code == -1:
            return self.ops.exit_code["hypercall"]
        if code is None:
            return self.ops.entry_failure_reason if self.has_run else None
        return self.ops.exit_code.get(self._event_name(code))

    # -- registers ------------------------------------------------------------------------
    def get_regs(self, arg):
        b = self._user(arg, 144, "KVM_GET_REGS")
        b[:144] = bytes(self.core.get_regs())
        return 0

    def set_regs(self, arg):
        b = self._user(arg, 144, "KVM_SET_REGS")
        regs = U.kvm_regs.from_buffer_copy(bytes(b[:144]))
        self.core.set_regs(regs)
        if regs.rflags & (1 << 17):
            # kvm_set_rflags keeps RFLAGS.VM (virtual-8086 mode); the core's façade drops it
            self.st[L.RFLAGS] |= 1 << 17
            self.core._update_mode()
        self.check_entry = True
        return 0

    def get_sregs(self, arg):
        b = self._user(arg, 312, "KVM_GET_SREGS")
        b[:312] = bytes(self.core.get_sregs())
        return 0

    def set_sregs(self, arg):
        b = self._user(arg, 312, "KVM_SET_SREGS")
        s = U.kvm_sregs.from_buffer_copy(bytes(b[:312]))
        why = valid_sregs(s, self.maxphyaddr())
        if why:
            raise OSError(errno.EINVAL, f"KVM_SET_SREGS: {why}")
        if s.cr8 & ~0xF:
            # __set_sregs_common -> kvm_set_cr8: a value with reserved bits (CR8_RESERVED_BITS)
            # is ignored without an error; CR8 keeps its old value
            s.cr8 = self.core.get_sregs().cr8
        self.core.set_sregs(s)
        self.check_entry = True
        return 0

    def get_fpu(self, arg):
        b = self._user(arg, 416, "KVM_GET_FPU")
        f = self.core.get_fpu()
        b[:416] = bytes(416)
        struct.pack_into("<HHB", b, 128, f["fcw"], f["fsw"], f["ftw"])
        struct.pack_into("<I", b, 408, f["mxcsr"])
        return 0

    def get_debugregs(self, arg):
        b = self._user(arg, 128, "KVM_GET_DEBUGREGS")
        d = self.core.get_debugregs()
        b[:128] = bytes(128)
        struct.pack_into("<4QQQ", b, 0, *d["db"], d["dr6"], d["dr7"])
        return 0

    def set_debugregs(self, arg):
        b = self._user(arg, 128, "KVM_SET_DEBUGREGS")
        db = struct.unpack_from("<4Q", b, 0)
        dr6, dr7, flags = struct.unpack_from("<QQQ", b, 32)
        if flags:
            raise OSError(errno.EINVAL, "kvm_debugregs.flags must be 0")
        if dr6 >> 32 or dr7 >> 32:
            raise OSError(errno.EINVAL, "DR6/DR7 bits 63:32 must be 0")
        self.core.set_debugregs(db=list(db), dr6=dr6, dr7=dr7)
        return 0

    def get_vcpu_events(self, arg):
        b = self._user(arg, 64, "KVM_GET_VCPU_EVENTS")
        st = self.st
        b[:64] = bytes(64)
        exc = int(st[L.PEND_EXC])
        if exc >= 0:
            b[0], b[1] = 1, exc                          # exception.injected, nr
        irq = int(st[L.PEND_IRQ])
        if irq >= 0:
            b[8], b[9] = 1, irq                          # interrupt.injected, nr
        b[11] = 1 if st[L.SHADOW] else 0                 # interrupt.shadow
        b[13] = 1 if (st[L.PEND_NMI] or self.nmi_pending) else 0   # nmi.pending
        b[14] = 1 if st[L.NMI_BLOCKED] else 0            # nmi.masked
        struct.pack_into("<II", b, 16, self.apic.sipi_vector if self.apic else 0,
                         0x1 | 0x4 | 0x8)                 # NMI_PENDING | SHADOW | SMM valid
        return 0

    def set_vcpu_events(self, arg):
        b = self._user(arg, 64, "KVM_SET_VCPU_EVENTS")
        flags = struct.unpack_from("<I", b, 20)[0]
        if flags & ~(0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x20):
            raise OSError(errno.EINVAL, f"unknown kvm_vcpu_events.flags {flags:#x}")
        if flags & 0x10:
            raise OSError(errno.EINVAL, "exception payloads need KVM_CAP_EXCEPTION_PAYLOAD, "
                                        "which the sim does not enable")
        st = self.st
        if (b[0] or b[3]) and (b[1] > 31 or b[1] == 2):
            raise OSError(errno.EINVAL, f"exception vector {b[1]} is not a valid exception")
        st[L.PEND_EXC] = b[1] if (b[0] or b[3]) else -1
        st[L.PEND_IRQ] = b[9] if b[8] else -1
        if flags & 0x4:
            st[L.SHADOW] = 1 if b[11] else 0
        if flags & 0x1:
            st[L.PEND_NMI] = 1 if b[13] else 0
        st[L.NMI_BLOCKED] = 1 if b[14] else 0
        if flags & 0x2 and self.apic is not None:
            self.apic.sipi_vector = struct.unpack_from("<I", b, 16)[0]
        return 0

    # -- MSRs / CPUID ------------------------------------------------------------------------
    # machine-check MSRs live in KVM itself (x86.c set_msr_mce/get_msr_mce)
    MCG_CAP, MCG_STATUS, MCG_CTL = 0x179, 0x17A, 0x17B

    def _get_msr(self, index, data):
        if index in (self.MCG_CAP, self.MCG_STATUS, self.MCG_CTL):
            return True, self.mce[index]
        v = self.core.get_msr(index)
        return (v is not None), (v if v is not None else data)

    def _set_msr(self, index, data):
        if index == self.MCG_STATUS or index == self.MCG_CTL:
            self.mce[index] = data
            return True, data
        if index == self.MCG_CAP:
            if data & ~0x1FF or (data & 0xFF) > 32:
                return False, data
            self.mce[index] = data
            return True, data
        if index == 0x277 and not _valid_pat(data):
            return False, data
        if index == 0x10 and data == 0 and not self.has_run:
            return True, data       # KVM treats an early host write of 0 as a TSC sync
        ok = self.core.set_msr(index, data)
        if ok and index == 0x1B:
            self.check_entry = True
        return ok, data

    def get_msrs(self, arg):
        from . import msrs
        return msrs.msr_io(self._user(arg, 8, "KVM_GET_MSRS"), self._get_msr, True)

    def set_msrs(self, arg):
        from . import msrs
        return msrs.msr_io(self._user(arg, 8, "KVM_SET_MSRS"), self._set_msr, False)

    def maxphyaddr(self):
        """``cpuid_query_maxphyaddr``: EAX[7:0] of the guest's CPUID leaf 0x80000008 if its
        leaf 0x80000000 reaches it, else 36 (also before any KVM_SET_CPUID2)."""
        ents = self.cpuid_entries
        top = next((e[3] for e in ents if e[0] == 0x80000000), None)
        if top is None or top < 0x80000008:
            return 36
        leaf = next((e[3] for e in ents if e[0] == 0x80000008), None)
        return 36 if leaf is None else leaf & 0xFF

    def set_cpuid2(self, arg):
        from . import cpuid
        b = self._user(arg, 8, "KVM_SET_CPUID2")
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
        self.core.set_cpuid(entries)
        return 0

    def get_cpuid2(self, arg):
        from . import cpuid
        b = self._user(arg, 8, "KVM_GET_CPUID2")
        nent = struct.unpack_from("<I", b, 0)[0]
        if nent < len(self.cpuid_entries):
            raise OSError(errno.E2BIG, f"KVM_GET_CPUID2: nent={nent} is smaller than the "
                          f"{len(self.cpuid_entries)} entries set; retry with a larger buffer")
        b[8:8 + 40 * len(self.cpuid_entries)] = cpuid.pack_entries(self.cpuid_entries)
        struct.pack_into("<I", b, 0, len(self.cpuid_entries))
        return 0

    # -- events ----------------------------------------------------------------------------
    def interrupt(self, arg):
        b = self._user(arg, 4, "KVM_INTERRUPT")
        irq = struct.unpack_from("<I", b, 0)[0]
        if irq >= 256:
            raise OSError(errno.EINVAL, f"KVM_INTERRUPT vector {irq} is not below 256")
        if self.kvm.arch.irqchip_in_kernel():
            raise OSError(errno.ENXIO, "KVM_INTERRUPT is for VMs without an in-kernel irqchip; "
                                       "with KVM_CREATE_IRQCHIP use KVM_IRQ_LINE or an irqfd")
        self.core.queue_interrupt(irq)
        self.vcpu.stat[S.IRQ_INJECTIONS] += 1
        return 0

    def nmi(self, arg):
        self.core.queue_nmi()
        self.vcpu.stat[S.NMI_INJECTIONS] += 1
        return 0

    def get_mp_state(self, arg):
        b = self._user(arg, 4, "KVM_GET_MP_STATE")
        if self.kvm.arch.irqchip_in_kernel():
            with self.kvm.irq_lock:
                self._accept_events()
            state = self.mp_state
        else:
            state = U.KVM_MP_STATE_RUNNABLE
        struct.pack_into("<I", b, 0, state)
        return 0

    def set_mp_state(self, arg):
        b = self._user(arg, 4, "KVM_SET_MP_STATE")
        state = struct.unpack_from("<I", b, 0)[0]
        if state not in (0, 1, 2, 3, 4):
            raise OSError(errno.EINVAL, f"mp_state {state} is not an x86 state (0..4)")
        if self.apic is None and state != U.KVM_MP_STATE_RUNNABLE:
            raise OSError(errno.EINVAL, "without an in-kernel irqchip the only mp_state is "
                                        "RUNNABLE (0); the VMM tracks halt/INIT/SIPI itself")
        if state == U.KVM_MP_STATE_SIPI_RECEIVED:
            self.mp_state = U.KVM_MP_STATE_INIT_RECEIVED
            self.apic.pending_events |= 2
        else:
            self.mp_state = state
        return 0

    def get_lapic(self, arg):
        if self.apic is None:
            raise OSError(errno.EINVAL, "KVM_GET_LAPIC needs an in-kernel irqchip "
                                        "(KVM_CREATE_IRQCHIP before KVM_CREATE_VCPU)")
        b = self._user(arg, 1024, "KVM_GET_LAPIC")
        with self.kvm.irq_lock:
            b[:1024] = self.apic.get_state()
        return 0

    def set_lapic(self, arg):
        if self.apic is None:
            raise OSError(errno.EINVAL, "KVM_SET_LAPIC needs an in-kernel irqchip "
                                        "(KVM_CREATE_IRQCHIP before KVM_CREATE_VCPU)")
        b = self._user(arg, 1024, "KVM_SET_LAPIC")
        with self.kvm.irq_lock:
            self.apic.set_state(bytes(b[:1024]))
        return 0

    def set_signal_mask(self, arg):
        self.vcpu.sigset = arg
        return 0

    # -- debug / translate -----------------------------------------------------------------
    def set_guest_debug(self, arg):
        b = self._user(arg, 72, "KVM_SET_GUEST_DEBUG")
        control = struct.unpack_from("<I", b, 0)[0]
        dr = list(struct.unpack_from("<8Q", b, 8))
        st = self.st
        if control & (U.KVM_GUESTDBG_INJECT_DB | U.KVM_GUESTDBG_INJECT_BP):
            if st[L.PEND_EXC] >= 0:
                raise OSError(errno.EBUSY, "an exception is already pending; run the vCPU "
                                           "before injecting #DB/#BP")
        inject = control & (U.KVM_GUESTDBG_INJECT_DB | U.KVM_GUESTDBG_INJECT_BP)
        eff = control if control & U.KVM_GUESTDBG_ENABLE else 0
        self.guest_debug = eff
        self.vcpu.guest_debug = eff
        self.core.set_guest_debug(eff & ~(U.KVM_GUESTDBG_INJECT_DB | U.KVM_GUESTDBG_INJECT_BP),
                                  dr)
        if inject & U.KVM_GUESTDBG_INJECT_BP:
            self.core.queue_exception(3)
        elif inject & U.KVM_GUESTDBG_INJECT_DB:
            self.core.queue_exception(1)
        return 0

    def translate(self, arg):
        """KVM_TRANSLATE: the core's walk without side effects; its reserved-bit checks follow
        the guest's CPUID as KVM's software walker does (MAXPHYADDR, 1 GiB pages)."""
        b = self._user(arg, 24, "KVM_TRANSLATE")
        la = struct.unpack_from("<Q", b, 0)[0]
        ok, phys = self.core.translate(la)
        struct.pack_into("<QBBB", b, 8, phys if ok else 0xFFFFFFFFFFFFFFFF, int(ok), 1, 0)
        return 0

    # -- reset -----------------------------------------------------------------------------
    def kvm_vcpu_reset(self, init_event):
        """``kvm_vcpu_reset``: power-on or INIT state (the CPUID table and the APIC base
        survive an INIT)."""
        st = self.st
        apic_base = int(st[L.M_APIC_BASE])
        dbg = self.guest_debug
        self.core.reset()
        self._fix_reset_state()
        if init_event:
            st[L.M_APIC_BASE] = apic_base
        if dbg:
            self.core.set_guest_debug(dbg, [int(st[L.GDBG_DR + i]) for i in range(8)])
        self.pending = 0
        self.check_entry = True

    def _blocked_until_runnable(self):
        from .x86_run import _block, _runnable
        return _block(self, lambda: _runnable(self))

    def _accept_events(self):
        from .x86_run import _accept_events
        return _accept_events(self)


def _valid_pat(v):
    for i in range(8):
        t = (v >> (8 * i)) & 0xFF
        if t not in (0, 1, 4, 5, 6, 7):
            return False
    return True


CR0_VALID = 0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x20 | (1 << 16) | (1 << 18) | (1 << 29) | \
    (1 << 30) | (1 << 31)
CR4_VALID = 0x7FF                  # VME..OSXMMEXCPT: what the teaching CPU implements


def valid_sregs(s, maxphyaddr=52) -> str | None:
    """``kvm_is_valid_sregs`` + ``kvm_is_valid_cr0/cr4`` + the APIC base check; None if OK.
    ``maxphyaddr`` is the guest's (``cpuid_query_maxphyaddr``), used for the long-mode CR3."""
    efer, cr0, cr4 = s.efer, s.cr0, s.cr4
    LME, LMA = 1 << 8, 1 << 10
    if (efer & LME) and (cr0 & (1 << 31)):
        if not (cr4 & (1 << 5)):
            return "long mode (EFER.LME and CR0.PG) needs CR4.PAE"
        if not (efer & LMA):
            return "EFER.LME with CR0.PG needs EFER.LMA set as well"
        if s.cr3 >> maxphyaddr:
            return (f"CR3 {s.cr3:#x} has bits above the guest's MAXPHYADDR ({maxphyaddr}: "
                    "CPUID 0x80000008 EAX[7:0], 36 without that leaf)")
    else:
        if efer & LMA:
            return "EFER.LMA is set without EFER.LME and CR0.PG"
        if s.cs.l:
            return "CS.L=1 outside long mode"
    if cr4 & ~CR4_VALID:
        return f"CR4 {cr4:#x} sets bits the CPU does not support (valid mask {CR4_VALID:#x})"
    if cr0 & ~CR0_VALID:
        return f"CR0 {cr0:#x} sets reserved bits"
    if (cr0 & (1 << 29)) and not (cr0 & (1 << 30)):
        return "CR0.NW=1 needs CR0.CD=1"
    if (cr0 & (1 << 31)) and not (cr0 & 1):
        return "CR0.PG=1 needs CR0.PE=1"
    ab = s.apic_base
    if ab & 0x2FF or ab & 0x400 or ab >> 52:
        return f"apic_base {ab:#x} sets reserved bits (x2APIC is not available)"
    return None


_EVENT = {L.EXIT_IO: "io", L.EXIT_MMIO: "mmio", L.EXIT_HLT: "hlt", L.EXIT_SHUTDOWN: "shutdown",
          L.EXIT_IRQ_WINDOW: "irq_window", L.EXIT_INTERNAL_ERROR: "emulation",
          L.EXIT_BUDGET: "intr"}


from .x86_run import kvm_arch_vcpu_ioctl_run as _kvm_arch_vcpu_ioctl_run  # noqa: E402
from .x86_run import make_kvm_run as _make_kvm_run  # noqa: E402

KvmVcpuArch.kvm_arch_vcpu_ioctl_run = _kvm_arch_vcpu_ioctl_run
KvmVcpuArch.make_kvm_run = _make_kvm_run


def _set_fpu(self, arg):
    """KVM_SET_FPU: the teaching CPU does not model x87/SSE registers, so there is nothing
    to load; refuse rather than pretend."""
    raise OSError(errno.EINVAL, "KVM_SET_FPU: the simulated CPU has no x87/SSE register "
                                "state (KVM_GET_FPU reports the reset values); use the hw "
                                "backend for FPU state")


KvmVcpuArch.set_fpu = _set_fpu
