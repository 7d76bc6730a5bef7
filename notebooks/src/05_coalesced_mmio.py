# %% [markdown]
# # Lesson 05 — Coalesced MMIO
#
# **You will** make a guest write to a device register hundreds of times, first with one
# exit per write, then with KVM buffering the writes in the **coalesced MMIO ring** — and
# count the exits saved. You will also fill the ring and see what KVM does then.
#
# **You will learn** `KVM_REGISTER_COALESCED_MMIO`, the ring in page 2 of the vCPU mmap
# (`struct kvm_coalesced_mmio_ring`: `first`, `last`, 170 entries), who advances which
# index, why only writes are coalesced, and why a VMM drains the ring before handling an exit.
#
# **You need** lesson 04 (MMIO exits and the exit loop).

# %% [markdown]
# ## 1. Why coalesce?
#
# Every MMIO exit is a round trip guest → KVM → VMM → KVM → guest. For device registers that
# are only *written* and whose effect need not be immediate (a framebuffer, a doorbell that
# may be late, an ISA VGA card), KVM can just **record** the write and let the guest go on.
# The VMM replays the recorded writes later, in order.
#
# `virt/kvm/coalesced_mmio.c`: `KVM_REGISTER_COALESCED_MMIO` with a `struct
# kvm_coalesced_mmio_zone {addr, size, pio}` registers a `kvm_coalesced_mmio_dev` on the
# VM's MMIO bus (or PIO bus with `pio=1`). When a guest write falls *entirely* inside a
# zone, `coalesced_mmio_write()` appends `{phys_addr, len, pio, data[8]}` at index `last`
# of the ring and advances `last` — no exit. The ring page is shared by the VM's vCPUs:
# it is page 2 (`KVM_CHECK_EXTENSION(KVM_CAP_COALESCED_MMIO)` = 2) of every vCPU's mmap.
#
# ```c
# struct kvm_coalesced_mmio_ring {
#     __u32 first, last;                      /* userspace consumes at first, KVM appends at last */
#     struct kvm_coalesced_mmio coalesced_mmio[];   /* (4096 - 8) / 24 = 170 entries */
# };
# ```

# %%
import kvmlab
from kvmlab import asm, KVM_EXIT_MMIO, KVM_EXIT_HLT
from kvmlab.exercise import check

FB = 0x20000            # a "framebuffer" device at GPA 0x20000: no memslot there

def writer(n):
    """Real-mode guest: n dword writes of 0, 1, 2, ... to FB, FB+4, ..., then hlt."""
    return f"""
.code16
_start:
    mov bx, {FB >> 4:#x}
    mov ds, bx
    xor di, di
    xor eax, eax
    mov cx, {n}
1:  mov dword ptr [di], eax
    add di, 4
    inc eax
    loop 1b
    hlt
"""

def fresh_vcpu(source, zone=None):
    """A new VM: 64 KiB RAM at GPA 0, the guest at 0x1000, vCPU 0 in real mode; and an
    optional coalesced zone (addr, size)."""
    vm = kvmlab.open().create_vm()
    mem = kvmlab.GuestMemory(0x10000)
    vm.set_user_memory_region(slot=0, guest_phys_addr=0, memory=mem)
    mem.write(0x1000, asm.assemble(source, base=0x1000).code)
    if zone:
        vm.register_coalesced_mmio(*zone)
    vcpu = vm.create_vcpu(0)
    sregs = vcpu.get_sregs()
    sregs.cs.selector, sregs.cs.base = 0, 0
    vcpu.set_sregs(sregs)
    vcpu.set_regs(rip=0x1000, rsp=0x8000, rflags=0x2)
    return vm, vcpu

def run_counting(vcpu, drain=True):
    """Exit loop: returns (exits by reason, writes seen by the device in order).  With
    drain=True the VMM consumes the ring after every KVM_RUN, before handling the exit."""
    counts, device = {}, []
    while True:
        e = vcpu.run()
        if drain:
            device += [(w.phys_addr, w.value) for w in vcpu.coalesced_ring.drain()]
        counts[e.name] = counts.get(e.name, 0) + 1
        if e.reason == KVM_EXIT_MMIO and e.is_write:
            device.append((e.phys_addr, e.value))
        elif e.reason == KVM_EXIT_MMIO:
            e.complete(0)
        else:
            return counts, device

# %% [markdown]
# ## 2. Without and with a zone
#
# 100 writes to the framebuffer. First as plain MMIO:

# %% check
vm, vcpu = fresh_vcpu(writer(100))
counts, device = run_counting(vcpu)
print("no zone:  ", counts, "| device saw", len(device), "writes, last", f"{device[-1][0]:#x} <- {device[-1][1]}")
# %% [expect]
# no zone:   {'MMIO': 100, 'HLT': 1} | device saw 100 writes, last 0x2018c <- 99

# %% [markdown]
# Now register a coalesced zone over the framebuffer (one page) before running:

# %% check
vm, vcpu = fresh_vcpu(writer(100), zone=(FB, 0x1000))
counts, device = run_counting(vcpu)
print("with zone:", counts, "| device saw", len(device), "writes, last", f"{device[-1][0]:#x} <- {device[-1][1]}")
# %% [expect]
# with zone: {'HLT': 1} | device saw 100 writes, last 0x2018c <- 99

# %% [markdown]
# Same 100 writes reach the device, in the same order — with 1 exit instead of 101.
#
# ## 3. Looking at the ring
#
# Run 5 writes and look at the ring *before* draining it. `first` stays where userspace
# left it (0); `last` has advanced by one per write.

# %%
vm, vcpu = fresh_vcpu(writer(5), zone=(FB, 0x1000))
print(vcpu.run())
ring = vcpu.coalesced_ring
print(ring)

# %% check
print("first", ring.first, "last", ring.last)
for w in ring.entries:
    print(w)
# %% [expect]
# first 0 last 5
# CoalescedWrite(MMIO 0x20000 len=4 data=00000000)
# CoalescedWrite(MMIO 0x20004 len=4 data=01000000)
# CoalescedWrite(MMIO 0x20008 len=4 data=02000000)
# CoalescedWrite(MMIO 0x2000c len=4 data=03000000)
# CoalescedWrite(MMIO 0x20010 len=4 data=04000000)

# %% [markdown]
# The ring view widget draws the 170 slots (its text form is printed under it):

# %%
from kvmlab.widgets import CoalescedRingView
CoalescedRingView(vcpu)

# %% [markdown]
# ## 4. A full ring
#
# The ring has 170 slots, but `first == last` means *empty*, so at most **169** entries can
# be outstanding (`(last + 1) % 170 == first` means full). When a write finds the ring full,
# KVM does not drop it and does not overwrite: the write exits as an ordinary
# `KVM_EXIT_MMIO`. Let a VMM that never drains the ring run 200 writes:

# %% check
vm, vcpu = fresh_vcpu(writer(200), zone=(FB, 0x1000))
counts, device = run_counting(vcpu, drain=False)
print(counts, "| ring: first", vcpu.coalesced_ring.first, "last", vcpu.coalesced_ring.last)
print("first write that exited:", f"{device[0][0]:#x} <- {device[0][1]}")
# %% [expect]
# {'MMIO': 31, 'HLT': 1} | ring: first 0 last 169
# first write that exited: 0x202a4 <- 169

# %% [markdown]
# Writes 0–168 went into the ring; write 169 (at 0x20000 + 4·169 = 0x202A4) found it full
# and exited, as did every later one. Note the *order*: the device would see write 169
# before writes 0–168 unless the VMM drains the ring first. That is why a VMM (QEMU's
# `kvm_cpu_exec`, and `kvmlab.vmm`'s `drain_ring`) empties the ring every time `KVM_RUN`
# returns, **before** it handles the exit.
#
# Reads are never coalesced (a read needs an answer now): a read in the zone exits.
#
# ## 5. Measured: exits per write
#
# The saving, counted in exits for a few write counts (draining at every exit):

# %% check
for n in (10, 100, 169, 170, 400):
    plain = run_counting(fresh_vcpu(writer(n))[1])[0]
    zoned = run_counting(fresh_vcpu(writer(n), zone=(FB, 0x1000))[1])[0]
    print(f"{n:4} writes: {sum(plain.values()):4} exits without a zone, {sum(zoned.values()):2} with")
# %% [expect]
#   10 writes:   11 exits without a zone,  1 with
#  100 writes:  101 exits without a zone,  1 with
#  169 writes:  170 exits without a zone,  1 with
#  170 writes:  171 exits without a zone,  2 with
#  400 writes:  401 exits without a zone,  3 with

# %% [markdown]
# With a zone, an exit happens only when the ring fills up (every 169 writes, since the VMM
# empties it at each exit) plus the final `hlt`. The time saved per write is large on real
# hardware (an MMIO exit round trip costs microseconds; a coalesced write is a few memory
# stores inside KVM) — but counts are what we can compare deterministically.
#
# `kvmlab.vmm.Machine` does all of this for you: `machine.coalesce(addr, size)` registers a
# zone and `run()` drains the ring to the device buses at every exit.
#
# ## Exercises
#
# **1.** A VMM that *never* drains the ring runs a guest that does 300 writes into a zone,
# then `hlt`. How many `KVM_EXIT_MMIO` exits?

# %%
answer = None   # a number

# %%
def mmio_exits_undrained(n):
    counts, _ = run_counting(fresh_vcpu(writer(n), zone=(FB, 0x1000))[1], drain=False)
    return counts.get("MMIO", 0)

# %% check
check(answer, mmio_exits_undrained(300), hint="the ring holds at most 169 entries")
# %% [expect]
# not answered yet: set `answer` in the cell above, run it, then run this cell again

# %% check
print("MMIO exits:", mmio_exits_undrained(300))
# %% [expect]
# MMIO exits: 131

# %% [markdown]
# **2.** Inside a registered zone, the guest executes `mov eax, dword ptr [0]` (a *read* of
# the framebuffer). Which exit reason does the VMM see first? (A name such as `"HLT"`.)

# %%
answer = None   # an exit reason name

# %%
def first_exit_of_read():
    vm, vcpu = fresh_vcpu(f".code16\n_start: mov bx, {FB >> 4:#x}\n mov ds, bx\n mov eax, dword ptr [0]\n hlt\n",
                          zone=(FB, 0x1000))
    return vcpu.run().name

# %% check
check(answer, first_exit_of_read(), hint="a read needs its value at once")
# %% [expect]
# not answered yet: set `answer` in the cell above, run it, then run this cell again

# %% check
print("first exit:", first_exit_of_read())
# %% [expect]
# first exit: MMIO

# %% [markdown]
# **3.** The zone covers only the first **16 bytes** of the framebuffer (`size=16`). The guest
# does 8 dword writes (to FB+0 … FB+28). How many MMIO exits?

# %%
answer = None   # a number

# %%
def mmio_exits_small_zone():
    counts, _ = run_counting(fresh_vcpu(writer(8), zone=(FB, 16))[1])
    return counts.get("MMIO", 0)

# %% check
check(answer, mmio_exits_small_zone(), hint="only writes entirely inside the zone are coalesced")
# %% [expect]
# not answered yet: set `answer` in the cell above, run it, then run this cell again

# %% check
print("MMIO exits:", mmio_exits_small_zone())
# %% [expect]
# MMIO exits: 4

# %% [markdown]
# Next: **lesson 06**, irqfd and ioeventfd — signals into and out of the guest without exits.
