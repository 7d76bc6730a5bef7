# %% [markdown]
# # Lesson 10 — Several vCPUs
#
# **You will** run a VM with two vCPUs, each in its own host thread; make them race on a
# shared counter and then fix the race with a locked instruction; and boot a second vCPU
# the way a PC does, with INIT and SIPI inter-processor interrupts.
#
# **You will learn** why every vCPU needs its own thread (`vcpu->mutex`, `KVM_RUN` blocks),
# what the vCPUs of a VM share (memory, the memslots, the I/O buses) and what they do not
# (registers, the `kvm_run` page), the multiprocessor state `mp_state`, and the `EAGAIN`
# that `KVM_RUN` returns when an AP has just been started.
#
# **You need** lessons 03 (vCPUs), 04 (the exit loop) and 06 (the in-kernel irqchip).

# %% [markdown]
# ## 1. One thread per vCPU
#
# `KVM_RUN` does not return while the guest runs, and every vCPU ioctl takes that vCPU's
# `vcpu->mutex` (`kvm_vcpu_ioctl` in `virt/kvm/kvm_main.c`). So a VMM runs each vCPU in a
# thread of its own (QEMU: `kvm_vcpu_thread_fn`, one thread per `-smp` CPU) and the host
# scheduler runs those threads on physical CPUs like any others. The vCPUs of a VM share its
# `struct kvm`: the memslots (so the same guest memory), the buses, the irqchip.
#
# `Machine(vcpus=2)` creates two vCPUs; `machine.start(vcpu=i)` runs vCPU *i*'s exit loop
# in a background thread. Both run this guest: add 1 to a shared counter 200 000 times.

# %%
import threading
import kvmlab
from kvmlab import asm
from kvmlab.vmm import Machine
from kvmlab.exercise import check

N = 200000
RACY = f"""
.code32
.equ COUNTER, 0x3000
_start:
    mov ecx, {N}
1:  mov eax, dword ptr [COUNTER]      # load
    inc eax                           # add 1
    mov dword ptr [COUNTER], eax      # store
    loop 1b
    xor al, al
    out 0xf4, al                      # done
"""
LOCKED = RACY.replace("""1:  mov eax, dword ptr [COUNTER]      # load
    inc eax                           # add 1
    mov dword ptr [COUNTER], eax      # store""", "1:  lock inc dword ptr [COUNTER]    # one atomic read-modify-write")
assert "lock inc" in LOCKED

def run_on_two_vcpus(source):
    """Both vCPUs run `source` (each with its own stack), in two threads; returns the counter."""
    with Machine(mode="protected", vcpus=2) as m:
        prog = asm.assemble(source, base=0x1000)
        m.load(prog, vcpu=0)
        m.load(prog, vcpu=1, stack=0x7000)
        handles = [m.start(vcpu=i, timeout=60) for i in range(2)]
        results = [h.wait() for h in handles]
        assert all(r.stop_reason == "debug_exit" for r in results), [r.summary() for r in results]
        return int(m.memory.view("<u4", 0x3000, 1)[0])

racy_total = run_on_two_vcpus(RACY)
print(f"racy counter: {racy_total} (expected {2 * N})")

# %% [markdown]
# Almost certainly less than 400 000, and a different number each run: while one vCPU holds
# the old value in `eax`, the other stores its own increment, and one of the two updates is
# lost. The vCPUs really run at the same time, on two host CPUs, sharing guest memory — just
# like two cores of a real machine.
#
# ## 2. A lock
#
# `lock inc dword ptr [counter]` makes the read-modify-write **atomic**: no other CPU can
# touch that memory between the read and the write. (Under KVM the guest's locked
# instruction runs on the real CPU, which locks the cache line; if KVM has to *emulate* a
# locked instruction it uses an atomic `cmpxchg` on the host memory,
# `emulator_cmpxchg_emulated` in `arch/x86/kvm/x86.c`.)

# %% check
print("locked counter:", run_on_two_vcpus(LOCKED), "of", 2 * N)
# %% [expect]
# locked counter: 400000 of 400000

# %% [markdown]
# ## 3. Booting an AP: INIT, SIPI and `mp_state`
#
# A PC starts with only the *bootstrap processor* (BSP) running. The others (*application
# processors*, APs) wait until the BSP sends them, through its local APIC, an **INIT** IPI
# and then a **SIPI** (start-up IPI) with a vector *v*: the AP starts in real mode at
# `CS = v << 8`, `IP = 0`, i.e. physical address `v * 4096`.
#
# With an in-kernel irqchip, KVM models this (`arch/x86/kvm/lapic.c`,
# `kvm_apic_accept_events`): a new AP's `mp_state` is `KVM_MP_STATE_UNINITIALIZED` (1), and
# `KVM_RUN` on it **blocks** until INIT and SIPI arrive. Then it returns **`EAGAIN`** —
# "state changed, call me again" — and the next `KVM_RUN` runs the AP from the SIPI vector.
# kvmlab's `VcpuFd.run()` does what QEMU does with that `EAGAIN`: it calls `KVM_RUN` again
# at once, so what you see is the AP's first real exit.
#
# The BSP writes the APIC's interrupt command register (ICR, at 0xFEE00300/0xFEE00310 — in
# the kernel, no exits) and waits for the AP to set a flag. The AP code at 0x8000 (SIPI
# vector 8) reads its APIC id with `cpuid` and stores id + 1 in the flag.

# %%
SMP_BOOT = r"""
.code32
.equ ICR_LO, 0xfee00300
.equ ICR_HI, 0xfee00310
.equ FLAG, 0x9000
_start:
    mov dword ptr [ICR_HI], 1 << 24     # destination: APIC id 1
    mov dword ptr [ICR_LO], 0x4500      # INIT (delivery mode 5, level assert)
    mov ecx, 100000
1:  loop 1b                             # firmware waits ~10 ms here
    mov dword ptr [ICR_LO], 0x4608      # SIPI (delivery mode 6), vector 8 -> 0x8000
2:  cmp byte ptr [FLAG], 0              # wait for the AP
    je 2b
    xor al, al
    out 0xf4, al
.org 0x8000 - 0x1000
.code16
ap_start:                               # the AP starts here, in real mode
    mov eax, 1
    cpuid                               # EBX[31:24] = initial APIC id
    shr ebx, 24
    inc bl
    mov byte ptr [FLAG], bl             # tell the BSP: "AP id + 1"
    mov al, 1
    out 0xf4, al
"""

def boot_ap():
    """Run the BSP with the Machine's loop and the AP with a hand-written loop in a thread.
    Returns (AP mp_state before, the AP's exits, flag, BSP result)."""
    ap_log = []
    with Machine(mode="protected", vcpus=2, irqchip=True) as m:
        m.load(asm.assemble(SMP_BOOT, base=0x1000))
        ap = m.vcpus[1]
        before = ap.get_mp_state()

        def ap_thread():
            for _ in range(5):
                e = ap.run()              # blocks until INIT + SIPI (EAGAIN is retried inside)
                ap_log.append(e.name)
                if e.reason == kvmlab.KVM_EXIT_IO and e.port == 0xF4:
                    return

        t = threading.Thread(target=ap_thread, daemon=True)
        t.start()
        bsp = m.run(timeout=30)
        t.join(30)
        return before, ap_log, int(m.memory[0x9000]), bsp

before, ap_log, flag, bsp = boot_ap()

# %% check
print("AP mp_state before:", before, "(KVM_MP_STATE_UNINITIALIZED)")
print("AP's exits:", ap_log)
print("flag written by the AP:", flag)
print("BSP:", bsp.summary())
# %% [expect]
# AP mp_state before: 1 (KVM_MP_STATE_UNINITIALIZED)
# AP's exits: ['IO']
# flag written by the AP: 2
# BSP: stopped: debug_exit (status 0); exits: IO 1; rip=0x1032

# %% [markdown]
# Without an in-kernel irqchip there is no LAPIC in the kernel: `KVM_GET_MP_STATE` always
# says RUNNABLE and the VMM itself decides when each vCPU starts (kvmtool and
# Firecracker simply start every vCPU at once in the state they want).
#
# *Differences you may meet:* on this course's test machine (a software "PVM" KVM
# backend), 32-bit guest code is emulated instruction by instruction and its `lock inc`
# loses updates between vCPUs; an AP started by SIPI fails with an internal error there.
#
# ## Exercises
#
# **1.** The counter guest from section 1 runs on **one** vCPU only (vCPU 1 is never
# started). What is the counter afterwards? (A number.)

# %%
answer = None   # a number

# %%
def one_vcpu_total():
    with Machine(mode="protected") as m:
        m.load(asm.assemble(RACY, base=0x1000))
        m.run()
        return int(m.memory.view("<u4", 0x3000, 1)[0])

# %% check
check(answer, one_vcpu_total(), hint="with nobody to race against, no update is lost")
# %% [expect]
# not answered yet: set `answer` in the cell above, run it, then run this cell again

# %% check
print("counter with one vCPU:", one_vcpu_total())
# %% [expect]
# counter with one vCPU: 200000

# %% [markdown]
# **2.** A VM with an in-kernel irqchip and three vCPUs (ids 0, 1, 2): what is `mp_state`
# of each right after creation? Answer as a list of three numbers.

# %%
answer = None   # a list, e.g. [0, 0, 0]

# %%
def mp_states(n=3):
    vm = kvmlab.open().create_vm()
    vm.create_irqchip()
    return [vm.create_vcpu(i).get_mp_state() for i in range(n)]

# %% check
check(answer, mp_states(), hint="only the bootstrap processor (vCPU 0) is runnable at reset")
# %% [expect]
# not answered yet: set `answer` in the cell above, run it, then run this cell again

# %% check
print("mp_state:", mp_states())
# %% [expect]
# mp_state: [0, 1, 1]

# %% [markdown]
# **3.** In the SIPI, the BSP used vector 8 and the AP started at 0x8000. At which physical
# address would it start with vector 0x9A? (A number.)

# %%
answer = None   # a number

# %% check
check(answer, 0x9A << 12, hint="CS = vector << 8, so CS.base = vector << 12, and IP = 0")
# %% [expect]
# not answered yet: set `answer` in the cell above, run it, then run this cell again

# %% check
print(f"vector 0x9A starts the AP at {0x9A << 12:#x}")
# %% [expect]
# vector 0x9A starts the AP at 0x9a000

# %% [markdown]
# Next: **lesson 11**, the same guests on real `/dev/kvm` and on the simulator.
