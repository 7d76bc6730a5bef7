# %% [markdown]
# # Lesson 03 — The vCPU, its fd and the `kvm_run` page
#
# **You will** create a vCPU with `KVM_CREATE_VCPU`, map its `kvm_run` page, read and set
# its registers, and run your first guest entirely by hand — no helper VMM.
#
# **You will learn** what the kernel creates for a vCPU (`struct kvm_vcpu`), the file
# operations of a vCPU fd (`ioctl` and `mmap`), the three pages of the vCPU mapping, the
# x86 reset state, and how `KVM_RUN` hands control to the guest and back.
#
# **You need** lessons 01 (fds, ioctls) and 02 (memory slots).

# %% [markdown]
# ## 1. `KVM_CREATE_VCPU`
#
# `kvm_vm_ioctl_create_vcpu()` (`virt/kvm/kvm_main.c`) checks the id (below
# `KVM_CAP_MAX_VCPU_ID`, not used yet), allocates a `struct kvm_vcpu`
# (`include/linux/kvm_host.h`) and **one page for `struct kvm_run`**, lets the architecture
# and the vendor module build their part (`kvm_arch_vcpu_create` → `vmx_vcpu_create` or
# `svm_vcpu_create`, lesson 09), stores the vCPU in `kvm->vcpu_array`, bumps
# `online_vcpus`, takes a reference on the VM and returns a new fd, `kvm-vcpu:<id>`.
#
# The vCPU fd's `file_operations` (`kvm_vcpu_fops`) have two entries that matter:
#
# * `unlocked_ioctl = kvm_vcpu_ioctl`: `KVM_RUN`, `KVM_GET_REGS`, `KVM_SET_SREGS`, ... Each
#   takes `vcpu->mutex`, so one vCPU is driven by one thread at a time.
# * `mmap = kvm_vcpu_mmap`: the page fault handler `kvm_vcpu_fault` hands out page 0 =
#   `vcpu->run` (`struct kvm_run`), page 1 = the PIO data page, page 2 = the VM's coalesced
#   MMIO ring. `KVM_GET_VCPU_MMAP_SIZE` says how many bytes to map.

# %%
import kvmlab
from kvmlab import asm
from kvmlab.exercise import check

kvm = kvmlab.open()
vm = kvm.create_vm()
mem = kvmlab.GuestMemory(0x10000)                    # 64 KiB at GPA 0
vm.set_user_memory_region(slot=0, guest_phys_addr=0, memory=mem)
vcpu = vm.create_vcpu(0)
print(vcpu, "fd", vcpu.fd)

# %% check
print("KVM_GET_VCPU_MMAP_SIZE:", kvm.vcpu_mmap_size)
print("mapped bytes:          ", len(vcpu._page))
print("sizeof(struct kvm_run):", __import__("ctypes").sizeof(kvmlab.kvm_run))
# %% [expect]
# KVM_GET_VCPU_MMAP_SIZE: 12288
# mapped bytes:           12288
# sizeof(struct kvm_run): 2352

# %% [markdown]
# `vcpu.kvm_run` is `struct kvm_run` laid over page 0 of that mapping (a ctypes structure
# with the kernel's layout). KVM writes it at every exit; the VMM writes a few *input*
# fields (`immediate_exit`, `request_interrupt_window`) before `KVM_RUN`.
#
# On the simulated backend, the kernel side: the new `struct kvm_vcpu` in `struct kvm`.

# %%
print(vm.kernel.vcpus)

# %% [markdown]
# ## 2. The reset state
#
# A new vCPU is in the state of an x86 CPU after power-on (`kvm_vcpu_reset` →
# `vmx_vcpu_reset`/`svm_vcpu_reset`): 16-bit real mode, `CS.selector = 0xF000` with
# `CS.base = 0xFFFF0000`, `RIP = 0xFFF0`. So the first instruction is fetched from linear
# address `0xFFFF0000 + 0xFFF0 = 0xFFFFFFF0`, 16 bytes below 4 GiB: where a PC's firmware
# ROM is. `RDX` holds the CPU signature (CPUID.1.EAX; 0x600 when no CPUID table is set).
#
# `KVM_GET_REGS` gives the general registers (`struct kvm_regs`), `KVM_GET_SREGS` the
# segment, descriptor-table and control registers (`struct kvm_sregs`).

# %% check
regs, sregs = vcpu.get_regs(), vcpu.get_sregs()
print(f"rip={regs.rip:#x} rflags={regs.rflags:#x} rdx={regs.rdx:#x} rsp={regs.rsp:#x}")
print(f"cs: selector={sregs.cs.selector:#x} base={sregs.cs.base:#x} limit={sregs.cs.limit:#x}")
print(f"cr0={sregs.cr0:#x} cr3={sregs.cr3:#x} cr4={sregs.cr4:#x} efer={sregs.efer:#x}")
print(f"first fetch from linear {sregs.cs.base + regs.rip:#x}")
# %% [expect]
# rip=0xfff0 rflags=0x2 rdx=0x600 rsp=0x0
# cs: selector=0xf000 base=0xffff0000 limit=0xffff
# cr0=0x60000010 cr3=0x0 cr4=0x0 efer=0x0
# first fetch from linear 0xfffffff0

# %% [markdown]
# ## 3. A first guest, by hand
#
# There is no memory at 0xFFFFFFF0 in our VM, so we point the vCPU at our own code instead:
# put the code at GPA 0x1000, set `CS` to selector 0 / base 0 with `KVM_SET_SREGS`, and
# `RIP = 0x1000` with `KVM_SET_REGS`. The guest adds two numbers and halts. Without an
# in-kernel interrupt controller, `hlt` makes `KVM_RUN` return to us with
# `exit_reason = KVM_EXIT_HLT` (5).

# %%
ADD = """
.code16
_start:
    mov ax, 2
    add ax, 3
    hlt
"""
prog = asm.assemble(ADD, base=0x1000)
for insn in prog.disassemble():
    print(insn)

# %%
def fresh_vcpu(code: bytes, at=0x1000):
    """A new VM with 64 KiB of RAM at GPA 0, `code` at `at`, and vCPU 0 in real mode at it."""
    vm = kvmlab.open().create_vm()
    mem = kvmlab.GuestMemory(0x10000)
    vm.set_user_memory_region(slot=0, guest_phys_addr=0, memory=mem)
    mem.write(at, code)
    vcpu = vm.create_vcpu(0)
    sregs = vcpu.get_sregs()
    sregs.cs.selector, sregs.cs.base = 0, 0
    vcpu.set_sregs(sregs)
    vcpu.set_regs(rip=at, rsp=0x8000, rflags=0x2)
    return vm, mem, vcpu

vm, mem, vcpu = fresh_vcpu(prog.code)
exit = vcpu.run()                                      # KVM_RUN

# %% check
print("exit:", exit)
print("kvm_run.exit_reason:", vcpu.kvm_run.exit_reason, "=", kvmlab.ExitReason(vcpu.kvm_run.exit_reason).name)
regs = vcpu.get_regs()
print(f"ax={regs.rax & 0xFFFF} rip={regs.rip:#x} (just after the hlt at {prog.end - 1:#x})")
# %% [expect]
# exit: <HLT>
# kvm_run.exit_reason: 5 = HLT
# ax=5 rip=0x1007 (just after the hlt at 0x1006)

# %% [markdown]
# `KVM_RUN` (`kvm_arch_vcpu_ioctl_run` in `arch/x86/kvm/x86.c`) loads the guest state and
# enters the guest (VMX `VMLAUNCH`/`VMRESUME`, SVM `VMRUN`). The CPU runs guest code until
# something needs the hypervisor — a *VM exit*. KVM handles most exits itself and re-enters
# at once; only when it needs userspace does it fill in `kvm_run` and return from the ioctl.
# `hlt` with no in-kernel interrupt controller is one of those.
#
# ## 4. The kvm_run page is shared memory
#
# `exit` above is just a decoded view of page 0. Let us look at the raw bytes for an exit
# that carries data: an `out` to port 0x3F8. The exit reason sits at offset 8
# (`KVM_EXIT_IO` = 2), and the `io` member of the union at offset 32: direction, size, port,
# count, and `data_offset` — where in the mapping the data is. It points into **page 1**.

# %%
OUT = """
.code16
_start:
    mov al, 'K'
    mov dx, 0x3f8
    out dx, al
    hlt
"""
vm, mem, vcpu = fresh_vcpu(asm.assemble(OUT, base=0x1000).code)
exit = vcpu.run()

# %% check
import struct
page = vcpu._page                                   # the whole 3-page mapping
reason = struct.unpack_from("<I", page, 8)[0]
direction, size, port, count, data_offset = struct.unpack_from("<BBHIQ", page, 32)
print("exit_reason", reason, "| direction", direction, "size", size, f"port {port:#x}", "count", count,
      "data_offset", data_offset)
print("byte at data_offset:", bytes(page[data_offset:data_offset + 1]))
print("decoded by kvmlab:  ", exit)
# %% [expect]
# exit_reason 2 | direction 1 size 1 port 0x3f8 count 1 data_offset 4096
# byte at data_offset: b'K'
# decoded by kvmlab:   <IO OUT port=0x3f8 size=1 count=1 data=4b>

# %% [markdown]
# Running again continues the guest after the `out`; it reaches the `hlt`:

# %%
print(vcpu.run())

# %% [markdown]
# ## Exercises
#
# **1.** With the reset state, from which *linear* address would a vCPU fetch its first
# instruction if we never called `KVM_SET_SREGS` / `KVM_SET_REGS`? (A number.)

# %%
answer = None   # a number

# %%
def first_fetch_address():
    vcpu = kvmlab.open().create_vm().create_vcpu(0)
    return vcpu.get_sregs().cs.base + vcpu.get_regs().rip

# %% check
check(answer, first_fetch_address(), hint="CS.base + RIP at reset")
# %% [expect]
# not answered yet: set `answer` in the cell above, run it, then run this cell again

# %% check
print(f"first fetch: {first_fetch_address():#x}")
# %% [expect]
# first fetch: 0xfffffff0

# %% [markdown]
# **2.** Before running it, we set `rbx = 7` with `KVM_SET_REGS`. What is in `bx` when this
# guest halts? (A number.)
#
# ```
# shl bx, 2
# add bx, 1
# hlt
# ```

# %%
answer = None   # a number

# %%
def bx_after():
    code = asm.assemble(".code16\n_start: shl bx, 2\n add bx, 1\n hlt\n", base=0x1000).code
    vm, mem, vcpu = fresh_vcpu(code)
    vcpu.set_regs(rbx=7)
    assert vcpu.run().reason == kvmlab.KVM_EXIT_HLT
    return vcpu.get_regs().rbx & 0xFFFF

# %% check
check(answer, bx_after(), hint="7 shifted left by 2, plus 1")
# %% [expect]
# not answered yet: set `answer` in the cell above, run it, then run this cell again

# %% check
print("bx =", bx_after())
# %% [expect]
# bx = 29

# %% [markdown]
# **3.** A guest does `mov ax, 0x4142` then `out dx, ax` to port 0x3F8. How many bytes does
# the IO exit carry, and what is the byte at `data_offset` (first byte)? Answer as a tuple
# `(size, first_byte)`.

# %%
answer = None   # a tuple, e.g. (1, 0x41)

# %%
def word_out():
    code = asm.assemble(".code16\n_start: mov ax, 0x4142\n mov dx, 0x3f8\n out dx, ax\n hlt\n", base=0x1000).code
    vm, mem, vcpu = fresh_vcpu(code)
    e = vcpu.run()
    return (e.size, vcpu._page[e.data_offset])

# %% check
check(answer, word_out(), hint="x86 is little endian")
# %% [expect]
# not answered yet: set `answer` in the cell above, run it, then run this cell again

# %% check
size, first = word_out()
print(f"size {size}, first byte {first:#x}")
# %% [expect]
# size 2, first byte 0x42

# %% [markdown]
# Next: **lesson 04**, exits and the userspace exit loop.
