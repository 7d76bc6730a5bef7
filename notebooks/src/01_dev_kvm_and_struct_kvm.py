# %% [markdown]
# # Lesson 01 — `/dev/kvm` and `struct kvm`
#
# **You will** open KVM, ask it what it can do, create a virtual machine, and then look
# *inside the kernel* at the object that represents it: `struct kvm`.
#
# **You will learn** the three kinds of KVM file descriptor (system, VM, vCPU), what
# `KVM_CREATE_VM` does in the kernel, the main fields of `struct kvm` and how they change as
# a VMM sets the VM up, and how KVM reports a wrong request (errno).
#
# **You need** lesson 00 (setup works). Runs on the simulated backend: only the simulated
# kernel can show you `struct kvm` (`vm.kernel`); on real KVM it lives in kernel memory.

# %% [markdown]
# ## 1. Three kinds of file descriptor
#
# KVM's whole user interface is file descriptors and `ioctl()`:
#
# ```
# open("/dev/kvm")          -> system fd   KVM_GET_API_VERSION, KVM_CHECK_EXTENSION, KVM_CREATE_VM, ...
#   ioctl(KVM_CREATE_VM)    -> VM fd       memory slots, vCPU creation, interrupts, ...
#     ioctl(KVM_CREATE_VCPU)-> vCPU fd     registers, KVM_RUN, and mmap() of the kvm_run page
# ```
#
# In the kernel (`virt/kvm/kvm_main.c`) each kind has its own `file_operations` and its
# own ioctl function: `kvm_dev_ioctl`, `kvm_vm_ioctl`, `kvm_vcpu_ioctl`. kvmlab mirrors
# them: `kvmlab.open()` returns a `Kvm` (the system fd), `Kvm.create_vm()` a `VmFd`,
# `VmFd.create_vcpu()` a `VcpuFd` — one Python method per ioctl.

# %%
import errno
import kvmlab

kvm = kvmlab.open()
kvm

# %% [markdown]
# ### Capabilities
#
# Before using an optional feature, a VMM asks `KVM_CHECK_EXTENSION` with a capability
# number (`KVM_CAP_*` in `include/uapi/linux/kvm.h`). The answer is 0 for "absent" and a
# positive number otherwise; for some capabilities the number *is* the information (how
# many memory slots, which page of the vCPU mmap holds the coalesced MMIO ring, ...).

# %% check
for cap in ["USER_MEMORY", "NR_MEMSLOTS", "MAX_VCPUS", "MAX_VCPU_ID", "COALESCED_MMIO",
            "IOEVENTFD", "IRQFD", "READONLY_MEM", "SET_GUEST_DEBUG", "BINARY_STATS_FD"]:
    print(f"KVM_CAP_{cap:<16}", kvm.check_extension(getattr(kvmlab, "KVM_CAP_" + cap)))
print("KVM_CAP_12345 (unknown)   ", kvm.check_extension(12345))
# %% [expect]
# KVM_CAP_USER_MEMORY      1
# KVM_CAP_NR_MEMSLOTS      32764
# KVM_CAP_MAX_VCPUS        1024
# KVM_CAP_MAX_VCPU_ID      4096
# KVM_CAP_COALESCED_MMIO   2
# KVM_CAP_IOEVENTFD        1
# KVM_CAP_IRQFD            1
# KVM_CAP_READONLY_MEM     1
# KVM_CAP_SET_GUEST_DEBUG  1
# KVM_CAP_BINARY_STATS_FD  1
# KVM_CAP_12345 (unknown)    0

# %% [markdown]
# ## 2. `KVM_CREATE_VM`
#
# `kvm_dev_ioctl_create_vm()` calls `kvm_create_vm()`, which
#
# 1. allocates a `struct kvm` (declared in `include/linux/kvm_host.h`) and lets the
#    architecture fill in its part, `struct kvm_arch` (`kvm_arch_init_vm` in
#    `arch/x86/kvm/x86.c`);
# 2. sets up empty memory-slot tables, the I/O buses (`kvm->buses[]`: PIO, MMIO, ...), the
#    locks, the statistics, and `users_count = 1` (the reference held by the VM fd);
# 3. adds the VM to the global list `vm_list` (under `kvm_lock`);
#
# and then the ioctl wraps the `struct kvm` into an anonymous-inode file called `kvm-vm`
# and returns its fd. The argument is the VM *type*; on x86 only 0 exists here.

# %%
vm = kvm.create_vm()
print("VM fd:", vm.fd)

# %% [markdown]
# ## 3. Inside the kernel: `struct kvm`
#
# The simulated kernel lets you read the live `struct kvm` behind a VM fd: `vm.kernel`. It
# is read-only, and it is the real object the simulated ioctls change. The fields a
# teaching VMM meets:
#
# | field | what it holds | changed by |
# |---|---|---|
# | `memslots` | guest-physical → host memory map (`struct kvm_memslots`) | `KVM_SET_USER_MEMORY_REGION` (lesson 02) |
# | `vcpus`, `online_vcpus` | the vCPUs (`struct kvm_vcpu`) | `KVM_CREATE_VCPU` (lesson 03) |
# | `pio_bus`, `mmio_bus` | in-kernel devices on the port and memory buses (`struct kvm_io_bus`) | ioeventfds, coalesced zones, in-kernel irqchip (lessons 05, 06) |
# | `coalesced_mmio_ring` | the ring of buffered MMIO writes | lesson 05 |
# | `irqfds`, `ioeventfds`, `irq_routing` | eventfd wiring and interrupt routes | lesson 06 |
# | `stat` | counters (`struct kvm_vm_stat`), also readable through `KVM_GET_STATS_FD` | the MMU, ... |
# | `arch` | `struct kvm_arch`: the x86 part (irqchip, TSS address, `kvm_x86_ops` flavour) | lesson 09 |
# | `users_count` | references to the VM: its fd, each vCPU fd, ... | creating/closing fds |
# | `lock`, `slots_lock`, `irq_lock` | who may change what at the same time | every ioctl |
#
# Print the whole structure:

# %%
k = vm.kernel
print(k)

# %% [markdown]
# The same as a widget, `kvmlab.widgets.KernelInspector`: it can stay on screen and follow
# the VM while you change it (`.refresh()` re-reads it).

# %%
from kvmlab.widgets import KernelInspector
inspector = KernelInspector(vm)
inspector

# %% check
k = vm.kernel
print("online_vcpus:", k.online_vcpus)
print("users_count: ", k.users_count)
print("memslots:    ", len(k.memslots))
# %% [expect]
# online_vcpus: 0
# users_count:  1
# memslots:     0

# %% [markdown]
# ## 4. Watch the fields change
#
# Give the VM 64 KiB of memory and two vCPUs, then read the same fields again. (Memory
# slots and vCPUs get whole lessons of their own; here we only watch `struct kvm`.)

# %% check
mem = kvmlab.GuestMemory(0x10000)
vm.set_user_memory_region(slot=0, guest_phys_addr=0, memory=mem)
vcpu0 = vm.create_vcpu(0)
vcpu1 = vm.create_vcpu(1)
k = vm.kernel
print("online_vcpus:", k.online_vcpus)
print("users_count: ", k.users_count)
print("memslots:    ", len(k.memslots))
# %% [expect]
# online_vcpus: 2
# users_count:  3
# memslots:     1

# %%
inspector.refresh();     # the widget above now shows the memslot and the two vCPUs

# %% [markdown]
# `users_count` went from 1 to 3: every vCPU fd holds a reference on the VM
# (`kvm_get_kvm()` in `kvm_vm_ioctl_create_vcpu`). That is why a VM survives the close of
# its own fd as long as a vCPU fd is open; `kvm_destroy_vm()` runs when the count drops to 0.
#
# The statistics are also readable through a file descriptor, on real KVM too
# (`KVM_GET_STATS_FD`, `virt/kvm/binary_stats.c`). kvmlab decodes that file into a dict:

# %%
stats = vm.stats()
print(len(stats), "VM statistics, e.g.", {n: stats[n] for n in list(stats)[:4]})

# %% [markdown]
# ## 5. When an ioctl goes wrong: errno
#
# An ioctl that KVM refuses returns -1 with `errno` set. kvmlab raises `KvmError` (an
# `OSError`) with the kernel's errno and a sentence about what to do. Underneath the
# friendly methods there is a plain `ioctl(fd, request, arg)`: `kvm.backend.ioctl` is that
# system call. Let us send requests to the wrong kind of fd:
#
# * unknown or misdirected requests on a **VM fd** fail with `ENOTTY` ("inappropriate
#   ioctl for device": `kvm_vm_ioctl` falls through to `kvm_arch_vm_ioctl`, which does not
#   know it);
# * on the **system fd** and a **vCPU fd** the fallthrough returns `EINVAL`.

# %% check
def try_ioctl(fd, request, arg=0):
    try:
        return kvm.backend.ioctl(fd, request, arg)
    except OSError as e:
        return errno.errorcode[e.errno]

print("KVM_RUN on the VM fd:           ", try_ioctl(vm.fd, kvmlab.KVM_RUN))
print("KVM_CREATE_VCPU on the system fd:", try_ioctl(kvm.fd, kvmlab.KVM_CREATE_VCPU, 0))
print("KVM_CREATE_VM with type 7:       ", try_ioctl(kvm.fd, kvmlab.KVM_CREATE_VM, 7))
print("KVM_GET_API_VERSION on a vCPU fd:", try_ioctl(vcpu0.fd, kvmlab.KVM_GET_API_VERSION))
# %% [expect]
# KVM_RUN on the VM fd:            ENOTTY
# KVM_CREATE_VCPU on the system fd: EINVAL
# KVM_CREATE_VM with type 7:        EINVAL
# KVM_GET_API_VERSION on a vCPU fd: EINVAL

# %% [markdown]
# The methods do the same, with an explanation:

# %%
try:
    vm.create_vcpu(0)          # id 0 exists already
except kvmlab.KvmError as e:
    print(e)

# %% [markdown]
# ## Exercises
#
# Each exercise starts from a fresh VM, so you can run it on its own.
#
# **1.** A new VM, three vCPUs. What is `users_count`?

# %%
answer = None   # a number

# %%
from kvmlab.exercise import check

def users_count_with(n_vcpus):
    vm = kvmlab.open().create_vm()
    vcpus = [vm.create_vcpu(i) for i in range(n_vcpus)]
    return vm.kernel.users_count

# %% check
check(answer, users_count_with(3), hint="one reference for the VM fd, one per vCPU fd")
# %% [expect]
# not answered yet: set `answer` in the cell above, run it, then run this cell again

# %% check
print("users_count with 3 vCPUs:", users_count_with(3))
# %% [expect]
# users_count with 3 vCPUs: 4

# %% [markdown]
# **2.** `KVM_CREATE_VM` is a system ioctl. Which errno do you get when you send it to a
# **VM** fd? (A name such as `"EINVAL"`.)

# %%
answer = None   # an errno name

# %% check
fresh = kvm.create_vm()          # on the same kvm (try_ioctl uses its backend)
check(answer, try_ioctl(fresh.fd, kvmlab.KVM_CREATE_VM, 0), hint="it is a VM fd: unknown requests fall through to kvm_arch_vm_ioctl")
# %% [expect]
# not answered yet: set `answer` in the cell above, run it, then run this cell again

# %% check
print("KVM_CREATE_VM on a VM fd:", try_ioctl(fresh.fd, kvmlab.KVM_CREATE_VM, 0))
# %% [expect]
# KVM_CREATE_VM on a VM fd: ENOTTY

# %% [markdown]
# **3.** `vm_list` is global: every VM of this "host" is on it. Create two more VMs and
# predict by how much `len(kvm.backend.vm_list)` grows.

# %%
answer = None   # a number

# %%
before = len(kvm.backend.vm_list)
extra = [kvm.create_vm() for _ in range(2)]
grew = len(kvm.backend.vm_list) - before

# %% check
check(answer, grew, hint="one struct kvm per KVM_CREATE_VM")
# %% [expect]
# not answered yet: set `answer` in the cell above, run it, then run this cell again

# %% check
print("vm_list grew by", grew)
for v in extra:
    v.close()
print("after closing their fds it shrinks back by", grew - (len(kvm.backend.vm_list) - before))
# %% [expect]
# vm_list grew by 2
# after closing their fds it shrinks back by 2

# %% [markdown]
# Next: **lesson 02**, memory slots — how guest-physical memory is made of host memory.
