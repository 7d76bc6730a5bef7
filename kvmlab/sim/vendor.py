"""arch/x86/kvm/vmx/vmx.c + arch/x86/kvm/svm/svm.c: ``struct kvm_x86_ops``, two flavours.

Real KVM is split into the generic x86 code and a vendor module that drives the
hardware: kvm-intel (VMX: VMCS, VM-exit *reasons*) or kvm-amd (SVM: VMCB, *exit codes*).
The simulated kernel has both flavours.  The flavour decides

* the hardware exit code each exit carries (``vcpu.arch.last_hw_exit``, shown in the
  ``kvm_exit`` trace event and by ``VcpuFd.hardware_exit_code``);
* what VM entry checks and how a failed entry is reported in
  ``kvm_run.fail_entry.hardware_entry_failure_reason`` (VMX: 0x80000021 "invalid guest
  state"; SVM: SVM_EXIT_ERR = -1), plus a kvmlab sentence naming the broken rule;
* the documented behavioural differences, e.g. SVM INIT-resets the vCPU before reporting
  KVM_EXIT_SHUTDOWN (the VMCB is undefined after a shutdown intercept), VMX keeps the state.
"""
from __future__ import annotations

# VMX basic exit reasons (SDM Appendix C)
VMX = dict(EXCEPTION_NMI=0, EXTERNAL_INTERRUPT=1, TRIPLE_FAULT=2, INIT_SIGNAL=3, SIPI_SIGNAL=4,
           INTERRUPT_WINDOW=7, NMI_WINDOW=8, CPUID=10, HLT=12, INVLPG=14, RDTSC=16, VMCALL=18,
           CR_ACCESS=28, DR_ACCESS=29, IO_INSTRUCTION=30, MSR_READ=31, MSR_WRITE=32,
           INVALID_STATE=33, MONITOR_TRAP_FLAG=37, PAUSE=40, APIC_ACCESS=44, EOI_INDUCED=45,
           EPT_VIOLATION=48, EPT_MISCONFIG=49)
VMX_EXIT_REASONS_FAILED_VMENTRY = 0x80000000
# SVM exit codes (APM vol. 2, appendix C)
SVM = dict(EXCP_BASE=0x40, DB=0x41, BP=0x43, INTR=0x60, NMI=0x61, VINTR=0x64, CPUID=0x72,
           HLT=0x78, INVLPG=0x79, IOIO=0x7B, MSR=0x7C, SHUTDOWN=0x7F, VMMCALL=0x81, NPF=0x400,
           ERR=0xFFFFFFFFFFFFFFFF)

# the generic events the run loop reports, mapped to each flavour's code
_EVENTS_VMX = {
    "io": VMX["IO_INSTRUCTION"], "mmio": VMX["EPT_MISCONFIG"], "hlt": VMX["HLT"],
    "shutdown": VMX["TRIPLE_FAULT"], "debug": VMX["EXCEPTION_NMI"],
    "singlestep": VMX["EXCEPTION_NMI"], "irq_window": VMX["INTERRUPT_WINDOW"],
    "intr": VMX["EXTERNAL_INTERRUPT"], "emulation": VMX["EPT_VIOLATION"],
    "cpuid": VMX["CPUID"], "msr_read": VMX["MSR_READ"], "msr_write": VMX["MSR_WRITE"],
    "hypercall": VMX["VMCALL"], "apic_access": VMX["APIC_ACCESS"], "invlpg": VMX["INVLPG"],
}
_EVENTS_SVM = {
    "io": SVM["IOIO"], "mmio": SVM["NPF"], "hlt": SVM["HLT"], "shutdown": SVM["SHUTDOWN"],
    "debug": SVM["BP"], "singlestep": SVM["DB"], "irq_window": SVM["VINTR"],
    "intr": SVM["INTR"], "emulation": SVM["NPF"], "cpuid": SVM["CPUID"],
    "msr_read": SVM["MSR"], "msr_write": SVM["MSR"], "hypercall": SVM["VMMCALL"],
    "apic_access": SVM["NPF"], "invlpg": SVM["INVLPG"],
}


class KvmX86Ops:
    """``struct kvm_x86_ops``: the vendor half of KVM."""

    def __init__(self, name, events, entry_failure_reason, reset_on_shutdown, code_names):
        self.name = name
        self.exit_code = events                    # generic event -> hardware code
        self.entry_failure_reason = entry_failure_reason
        self.reset_on_shutdown = reset_on_shutdown
        self._names = code_names

    def code_name(self, code):
        if self.name == "vmx" and code & VMX_EXIT_REASONS_FAILED_VMENTRY:
            return "VM-entry failure: " + self._names.get(code & 0xFFFF, hex(code))
        return self._names.get(code, hex(code))

    # -- VM entry consistency checks ---------------------------------------------------------
    def check_entry(self, s) -> str | None:
        """Return the sentence naming the first broken rule, or None if entry succeeds.
        ``s`` is a dict of the guest state (see ``x86.entry_state``)."""
        return _check_vmx(s) if self.name == "vmx" else _check_svm(s)

    def __repr__(self):
        return f"kvm_x86_ops({'kvm-intel' if self.name == 'vmx' else 'kvm-amd'})"


def _seg_limit_ok(seg):
    lim, g = seg["limit"], seg["g"]
    if g:
        return (lim & 0xFFF) == 0xFFF
    return lim <= 0xFFFFF


def _check_vmx(s):
    """SDM 27.3.1 checks on the guest-state area (KVM runs with unrestricted guest)."""
    cs, ss, tr, ldt = s["cs"], s["ss"], s["tr"], s["ldt"]
    lma = bool(s["efer"] & (1 << 10))
    pe = bool(s["cr0"] & 1)
    if lma and cs["l"] and cs["db"]:
        return "CS.L=1 and CS.D=1 in long mode"
    if s["rflags"] & (1 << 17) and lma:
        return "RFLAGS.VM=1 in IA-32e mode"
    if cs["unusable"]:
        return "CS is marked unusable"
    if not cs["present"]:
        return "CS is not present (CS.P=0)"
    if not cs["s"]:
        return "CS is a system segment (CS.S=0)"
    if cs["type"] not in (3, 9, 11, 13, 15):
        return f"CS type {cs['type']} is not an accessed code segment (9, 11, 13, 15) or, " \
               "with unrestricted guest, 3"
    if pe and cs["type"] in (9, 11) and cs["dpl"] != ss["dpl"]:
        return f"CS.DPL ({cs['dpl']}) differs from SS.DPL ({ss['dpl']}) for non-conforming code"
    if cs["type"] == 3 and cs["dpl"] != 0:
        return "CS type 3 (unrestricted guest real mode) needs CS.DPL=0"
    if not ss["unusable"] and ss["type"] not in (3, 7):
        return f"SS type {ss['type']} is not a read/write data segment (3 or 7)"
    if not pe and not ss["unusable"] and ss["dpl"] != 0:
        return "SS.DPL must be 0 when CR0.PE=0"
    for name in ("cs", "ss", "ds", "es", "fs", "gs"):
        seg = s[name]
        if not seg["unusable"] and not _seg_limit_ok(seg):
            return f"{name.upper()} limit {seg['limit']:#x} does not match its granularity " \
                   f"(G={seg['g']})"
    if tr["unusable"]:
        return "TR is marked unusable"
    if tr["s"]:
        return "TR is not a system segment (TR.S=1)"
    if not tr["present"]:
        return "TR is not present (TR.P=0)"
    if tr["type"] not in ((11,) if lma else (3, 11)):
        return f"TR type {tr['type']} is not a busy TSS (11{'' if lma else ' or 3'})"
    if not ldt["unusable"]:
        if ldt["s"] or ldt["type"] != 2 or not ldt["present"]:
            return "LDTR is usable but not a present LDT descriptor (type 2, S=0, P=1)"
    return None


def _check_svm(s):
    """APM 15.5.1 VMRUN consistency checks (SVM checks far fewer segment rules than VMX)."""
    cs = s["cs"]
    lme = bool(s["efer"] & (1 << 8))
    pg = bool(s["cr0"] & (1 << 31))
    pae = bool(s["cr4"] & (1 << 5))
    if lme and pg and pae and cs["l"] and cs["db"]:
        return "EFER.LME, CR0.PG, CR4.PAE, CS.L and CS.D all set (CS.L=1 and CS.D=1 in long mode)"
    if s.get("dr6", 0) >> 32:
        return "DR6 bits 63:32 are not zero"
    if s.get("dr7", 0) >> 32:
        return "DR7 bits 63:32 are not zero"
    return None


_VMX_NAMES = {v: k for k, v in VMX.items()}
_SVM_NAMES = {v: k for k, v in SVM.items()}

VMX_OPS = KvmX86Ops("vmx", _EVENTS_VMX, VMX_EXIT_REASONS_FAILED_VMENTRY | VMX["INVALID_STATE"],
                    reset_on_shutdown=False, code_names=_VMX_NAMES)
SVM_OPS = KvmX86Ops("svm", _EVENTS_SVM, SVM["ERR"], reset_on_shutdown=True,
                    code_names=_SVM_NAMES)


def kvm_x86_ops_for(vendor: str) -> KvmX86Ops:
    return VMX_OPS if vendor == "intel" else SVM_OPS
