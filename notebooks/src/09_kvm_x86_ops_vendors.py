# %% [markdown]
# # Lesson 09 — `kvm_x86_ops`: VMX and SVM
#
# **You will** run the same guests on the two flavours of x86 KVM — Intel's VMX (the
# `kvm-intel` module) and AMD's SVM (`kvm-amd`) — and compare the hardware exit codes behind
# each KVM exit, what happens at a triple fault, and which guest states the hardware refuses
# to enter (`KVM_EXIT_FAIL_ENTRY`).
#
# **You will learn** how x86 KVM is split into a generic part and a vendor module joined by
# `struct kvm_x86_ops`, VMX exit reasons vs SVM exit codes, the VMCS and the VMCB, and how
# to read a VM-entry failure.
#
# **You need** lessons 03 (`KVM_SET_SREGS`) and 04 (exits). This lesson uses the simulator
# explicitly (`kvmlab.open("sim", vendor=...)`): a real machine has only one vendor.

# %% [markdown]
# ## 1. One interface, two vendor modules
#
# x86 KVM is three kernel modules: `kvm.ko` (the generic code: `virt/kvm/*.c` and
# `arch/x86/kvm/x86.c`, the MMU, the instruction emulator, the in-kernel irqchip) and one of
# `kvm-intel.ko` (`arch/x86/kvm/vmx/`) or `kvm-amd.ko` (`arch/x86/kvm/svm/`). The vendor
# module fills in a table of function pointers, **`struct kvm_x86_ops`**
# (`arch/x86/include/asm/kvm_host.h`; `vmx_x86_ops` in `vmx/main.c`, `svm_x86_ops` in
# `svm/svm.c`), which the generic code calls through `static_call(kvm_x86_*)`:
# `vcpu_create`, `vcpu_run`, `handle_exit`, `set_cr0`, `get_segment`, `set_rflags`,
# `inject_irq`, ... about a hundred operations.
#
# | | Intel VMX | AMD SVM |
# |---|---|---|
# | guest state lives in | VMCS (accessed with `vmread`/`vmwrite`) | VMCB (a memory page) |
# | enter the guest | `vmlaunch` / `vmresume` | `vmrun` |
# | why it exited | *exit reason* (SDM Appendix C): 12 = HLT, 30 = I/O, 48/49 = EPT violation/misconfig | *exit code* (APM Appendix C): 0x78 = HLT, 0x7B = IOIO, 0x400 = NPF |
# | `handle_exit` | `vmx_handle_exit` → `kvm_vmx_exit_handlers[reason]` | `svm_handle_exit` → `svm_exit_handlers[code]` |
#
# The simulator has both flavours; `vcpu.hardware_exit_code` (simulator only) tells you the
# code the vendor module saw for the last exit. (On real KVM you would see it in the
# `kvm_exit` tracepoint: `perf trace -e kvm:kvm_exit`.)

# %%
import kvmlab
from kvmlab import asm
from kvmlab.vmm import Machine
from kvmlab.sim.vendor import VMX, SVM
from kvmlab.exercise import check

VMX_NAME = {v: k for k, v in VMX.items()}
SVM_NAME = {v: k for k, v in SVM.items()}

for vendor in ("intel", "amd"):
    kvm = kvmlab.open("sim", vendor=vendor)
    print(vendor, "->", kvm.backend.kvm_x86_ops)

# %% [markdown]
# ## 2. Hardware exit codes
#
# One guest, three kinds of exit: an `out` (port I/O), a store to a GPA without a memslot
# (MMIO) and `hlt`. We run it on each flavour and record, for every userspace exit, the KVM
# exit reason and the vendor's code.

# %%
GUEST = """
.code16
_start:
    mov al, 1
    out 0x80, al              # port I/O
    mov bx, 0x3000
    mov ds, bx
    mov byte ptr [0], 1       # GPA 0x30000: no memslot (RAM is 128 KiB) -> MMIO
    hlt
"""

def exits_with_codes(vendor, source=GUEST, mode="real"):
    kvm = kvmlab.open("sim", vendor=vendor)
    names = VMX_NAME if vendor == "intel" else SVM_NAME
    rows = []
    with Machine(mode=mode, memory=0x20000, kvm=kvm) as m:
        m.load(asm.assemble(source, base=0x1000))
        def trace(ex, action):
            code = m.vcpu.hardware_exit_code
            rows.append((ex.name, code, names.get(code, "?")))
        m.run(trace=trace)
    return rows

# %% check
for vendor in ("intel", "amd"):
    for name, code, hw in exits_with_codes(vendor):
        print(f"{vendor:5} KVM_EXIT_{name:<5} hardware code {code:#x} ({hw})")
# %% [expect]
# intel KVM_EXIT_IO    hardware code 0x1e (IO_INSTRUCTION)
# intel KVM_EXIT_MMIO  hardware code 0x31 (EPT_MISCONFIG)
# intel KVM_EXIT_HLT   hardware code 0xc (HLT)
# amd   KVM_EXIT_IO    hardware code 0x7b (IOIO)
# amd   KVM_EXIT_MMIO  hardware code 0x400 (NPF)
# amd   KVM_EXIT_HLT   hardware code 0x78 (HLT)

# %% [markdown]
# Same KVM exits, different hardware vocabulary. For MMIO, Intel reports an **EPT
# misconfiguration**: KVM deliberately marks GPAs without a memslot with an invalid EPT
# entry so that accesses there exit fast (`handle_ept_misconfig` → `kvm_mmu_page_fault`
# with `PFERR_RSVD`). AMD has no such trick and reports a nested page fault (NPF).
#
# ## 3. Triple fault: the state afterwards differs
#
# Both flavours report a triple fault as `KVM_EXIT_SHUTDOWN`. But after an SVM *shutdown*
# intercept the VMCB contents are undefined, so `shutdown_interception()` in `svm.c`
# re-initialises the vCPU (`kvm_vcpu_reset(vcpu, true)`, an INIT) **before** returning to
# userspace. VMX keeps the state, so a VMM can still see where the guest died.

# %%
TRIPLE = """
.code32
_start:
    mov eax, 0x1234
    ud2                       # #UD, no IDT -> triple fault
"""

def after_triple_fault(vendor):
    with Machine(mode="protected", kvm=kvmlab.open("sim", vendor=vendor)) as m:
        m.load(asm.assemble(TRIPLE, base=0x1000))
        r = m.run()
        return r.stop_reason, r.regs["rip"], r.regs["rax"], r.sregs["cs"]["base"]

# %% check
for vendor in ("intel", "amd"):
    reason, rip, rax, cs_base = after_triple_fault(vendor)
    print(f"{vendor:5} {reason}: rip={rip:#x} rax={rax:#x} cs.base={cs_base:#x}")
# %% [expect]
# intel shutdown: rip=0x1005 rax=0x1234 cs.base=0x0
# amd   shutdown: rip=0xfff0 rax=0x0 cs.base=0xffff0000

# %% [markdown]
# ## 4. VM-entry failures
#
# `KVM_SET_SREGS` checks only what the generic code cares about (control-register
# combinations, lesson 03). Segment descriptors can be set to anything — the **hardware**
# checks them when KVM tries to enter the guest, and the two vendors check different
# things:
#
# * VMX checks the whole guest-state area (SDM 27.3.1: segment types, present bits, DPLs,
#   limits vs. granularity, TR, LDTR, ...). A failure makes `vmlaunch` exit with reason
#   `0x80000021` = bit 31 ("VM-entry failure") | 33 (`INVALID_GUEST_STATE`). KVM reports
#   `KVM_EXIT_FAIL_ENTRY` with that value in `fail_entry.hardware_entry_failure_reason`.
#   (Real KVM first tries to *emulate* some invalid states; the simulator does not.)
# * SVM's `vmrun` checks far less (APM 15.5.1: e.g. EFER/CR0/CR4 consistency, CS.L and CS.D
#   not both set in long mode) and reports `SVM_EXIT_ERR` = -1.
#
# The simulator also writes the rule that was broken after `fail_entry` in `kvm_run`
# (a kvmlab extension, so you do not have to look it up in the SDM).

# %%
def entry_with(vendor, mode, change):
    """Run a one-instruction guest after `change(sregs)`; return (exit name, hw reason, rule)."""
    with Machine(mode=mode, kvm=kvmlab.open("sim", vendor=vendor)) as m:
        m.load(asm.assemble(".code32\n_start: hlt\n" if mode != "long" else ".code64\n_start: hlt\n", base=0x1000))
        s = m.vcpu.get_sregs()
        change(s)
        m.vcpu.set_sregs(s)                       # accepted: KVM_SET_SREGS does not check segments
        e = m.vcpu.run()
        if e.reason != kvmlab.KVM_EXIT_FAIL_ENTRY:
            return e.name, None, ""
        rule = bytes(m.vcpu._page[48:48 + 200]).split(b"\0")[0].decode()
        return e.name, e.hardware_entry_failure_reason, rule

def cs_not_present(s):
    s.cs.present = 0

def cs_l_and_d(s):
    s.cs.l, s.cs.db = 1, 1

# %% check
for what, mode, change in [("CS not present, protected mode", "protected", cs_not_present),
                           ("CS.L=1 and CS.D=1, long mode  ", "long", cs_l_and_d)]:
    for vendor in ("intel", "amd"):
        name, reason, rule = entry_with(vendor, mode, change)
        shown = f"{reason:#x}" if reason is not None else "-"
        print(f"{what} {vendor:5}: {name:<10} reason={shown} {rule}")
# %% [expect]
# CS not present, protected mode intel: FAIL_ENTRY reason=0x80000021 CS is not present (CS.P=0)
# CS not present, protected mode amd  : HLT        reason=- 
# CS.L=1 and CS.D=1, long mode   intel: FAIL_ENTRY reason=0x80000021 CS.L=1 and CS.D=1 in long mode
# CS.L=1 and CS.D=1, long mode   amd  : FAIL_ENTRY reason=0xffffffffffffffff EFER.LME, CR0.PG, CR4.PAE, CS.L and CS.D all set (CS.L=1 and CS.D=1 in long mode)

# %% [markdown]
# AMD happily ran the guest with a "not present" CS: SVM takes the segment cache as given.
# On Intel the same state is refused at entry.
#
# *Differences you may meet:* this course's test machine runs a software KVM backend
# ("PVM", neither VMX nor SVM): it never reports `FAIL_ENTRY` and does not reset the vCPU
# at a triple fault. On a bare-metal host you would see one of the two columns above.
#
# ## Exercises
#
# **1.** What is the VMX basic exit reason (a number) when the guest executes `cpuid`?
# (KVM handles CPUID in the kernel, so this never reaches userspace — but the VM exit
# happens.)

# %%
answer = None   # a number

# %% check
check(answer, VMX["CPUID"], hint="SDM Appendix C; or look at kvmlab.sim.vendor.VMX")
# %% [expect]
# not answered yet: set `answer` in the cell above, run it, then run this cell again

# %% check
print("VMX exit reason for CPUID:", VMX["CPUID"], "| SVM exit code:", hex(SVM["CPUID"]))
# %% [expect]
# VMX exit reason for CPUID: 10 | SVM exit code: 0x72

# %% [markdown]
# **2.** On the AMD flavour, after the triple fault in section 3, what is `rip`? (A number.)

# %%
answer = None   # a number

# %% check
check(answer, after_triple_fault("amd")[1], hint="the vCPU went through INIT: the reset state of lesson 03")
# %% [expect]
# not answered yet: set `answer` in the cell above, run it, then run this cell again

# %% check
print(f"amd rip after the triple fault: {after_triple_fault('amd')[1]:#x}")
# %% [expect]
# amd rip after the triple fault: 0xfff0

# %% [markdown]
# **3.** In protected mode, set `TR` unusable (`sregs.tr.unusable = 1`). Which vendors refuse
# to enter? Answer with a list, e.g. `["intel"]`, `["amd"]`, `["intel", "amd"]` or `[]`.

# %%
answer = None   # a list of vendors

# %%
def tr_unusable(s):
    s.tr.unusable = 1
refusing = [v for v in ("intel", "amd") if entry_with(v, "protected", tr_unusable)[0] == "FAIL_ENTRY"]

# %% check
check(answer, refusing, hint="which vendor checks TR at VM entry?")
# %% [expect]
# not answered yet: set `answer` in the cell above, run it, then run this cell again

# %% check
print("refuse to enter:", refusing)
# %% [expect]
# refuse to enter: ['intel']

# %% [markdown]
# Next: **lesson 10**, several vCPUs.
