# %% [markdown]
# # Lesson 06 — irqfd and ioeventfd
#
# **You will** wake a halted vCPU with an interrupt sent from another thread by writing to
# an eventfd (**irqfd**), and let a guest ring a "doorbell" that signals an eventfd without
# any exit (**ioeventfd**).
#
# **You will learn** what an eventfd is, how `virt/kvm/eventfd.c` connects eventfds to
# interrupt lines and to I/O addresses, the in-kernel interrupt controller
# (`KVM_CREATE_IRQCHIP`), and why this is how virtio devices and vhost talk to guests.
#
# **You need** lesson 04 (exits, the exit loop). A little x86 interrupt background helps:
# in real mode, interrupt vector *n* jumps to the address stored in the IVT at `4*n`.

# %% [markdown]
# ## 1. eventfd: a counter with a file descriptor
#
# `eventfd(2)` creates a 64-bit counter in the kernel with an fd: `write(fd, n)` adds *n*,
# `read(fd)` returns the count and resets it (or blocks while it is 0). Any thread, any
# process, or **the kernel itself** can signal it, and anyone can wait on it with
# `poll`/`epoll`. KVM uses eventfds in both directions:
#
# | | direction | `struct` (virt/kvm/eventfd.c) | ioctl |
# |---|---|---|---|
# | **irqfd** | somebody → guest: "raise interrupt line GSI *n*" | `struct kvm_kernel_irqfd` | `KVM_IRQFD` |
# | **ioeventfd** | guest → somebody: "the guest wrote this address" | `struct _ioeventfd` | `KVM_IOEVENTFD` |
#
# Neither involves the VMM's exit loop: no `KVM_RUN` return, no ioctl per event. That is
# what lets a `vhost` kernel thread or another process (vhost-user) run a virtio device.

# %%
import os, threading, time
import kvmlab
from kvmlab import asm
from kvmlab.vmm import Machine
from kvmlab.exercise import check

efd = os.eventfd(0, os.EFD_NONBLOCK)
os.eventfd_write(efd, 1)
os.eventfd_write(efd, 2)
print("read:", os.eventfd_read(efd))
os.close(efd)

# %% [markdown]
# ## 2. irqfd: an interrupt from another thread
#
# Interrupts need an interrupt controller. `KVM_CREATE_IRQCHIP` (before any vCPU) puts the
# PC's controllers *in the kernel*: two 8259 PICs (`arch/x86/kvm/i8259.c`), an IOAPIC
# (`ioapic.c`) and a local APIC per vCPU (`lapic.c`). Now:
#
# * interrupt lines ("GSIs") 0–15 are wired to the PIC and IOAPIC; after reset the PIC
#   delivers line *n* as vector *n* (until the guest programs it);
# * `hlt` no longer exits to userspace: the vCPU sleeps **inside** `KVM_RUN`
#   (`kvm_vcpu_halt`) until an interrupt arrives.
#
# `KVM_IRQFD {fd, gsi}` makes KVM wait on the eventfd (`irqfd_wakeup`, a wait-queue
# callback). When someone writes to it, KVM raises and lowers GSI *gsi*
# (`kvm_set_irq`), the PIC picks it up, and the halted vCPU wakes and takes the interrupt.
#
# The guest installs a handler for vector 4, enables interrupts and halts. A timer thread
# writes the eventfd 0.2 s later.

# %%
WAIT_FOR_IRQ4 = r"""
.code16
_start:
    xor ax, ax
    mov ds, ax
    mov word ptr [4 * 4], offset irq4       # IVT[4] = 0000:irq4
    mov word ptr [4 * 4 + 2], 0
    mov si, offset waiting
    call puts
    sti
idle:
    hlt                                     # sleeps inside KVM_RUN: no exit
    jmp idle
irq4:
    mov si, offset arrived
    call puts
    mov al, 0x20
    out 0x20, al                            # EOI to the in-kernel PIC: no exit either
    xor al, al
    out 0xf4, al                            # debug exit: end the run
    iret
puts:
    mov dx, 0x3f8
1:  lodsb
    test al, al
    jz 2f
    out dx, al
    jmp 1b
2:  ret
waiting: .asciz "waiting for IRQ 4\n"
arrived: .asciz "IRQ 4 arrived\n"
"""

def irq_demo(delay=0.2):
    with Machine(mode="real", irqchip=True) as m:
        m.load(asm.assemble(WAIT_FOR_IRQ4, base=0x1000))
        efd = m.add_irqfd(4)                           # os.eventfd + KVM_IRQFD(gsi=4)
        threading.Timer(delay, os.eventfd_write, (efd, 1)).start()
        return m.run()

result = irq_demo()

# %% check
print(result.console, end="")
print(result.summary())
# %% [expect]
# waiting for IRQ 4
# IRQ 4 arrived
# stopped: debug_exit (status 0); exits: IO 33; rip=0x1028

# %% [markdown]
# 33 exits, all of them the serial port's `out`s and the final debug exit. No `HLT` exit
# (the vCPU slept in the kernel), no exit for the interrupt (the eventfd write went
# straight to KVM), none for the `out 0x20` (the PIC is in the kernel now).
#
# On the simulated backend the irqfd is visible in `struct kvm`:

# %%
with Machine(mode="real", irqchip=True) as m:
    m.add_irqfd(4)
    print(m.vm.kernel.irqfds)

# %% [markdown]
# ## 3. ioeventfd: a doorbell without an exit
#
# A virtio driver tells the device "there is new work in queue 0" by writing the queue
# number to a *notify* register. The value hardly matters — the *event* does. With
# `KVM_IOEVENTFD {addr, len, fd, flags (PIO, DATAMATCH), datamatch}` KVM registers an
# `_ioeventfd` device on the PIO or MMIO bus; a guest write that matches the address and
# length (and the value, with DATAMATCH) just increments the eventfd counter
# (`ioeventfd_write` → `eventfd_signal`) and the guest continues. The VMM (or vhost) reads
# the eventfd whenever it likes.
#
# Here: a 2-byte doorbell on port 0x520 and a 4-byte one at GPA 0x30000 (no memslot). The
# guest rings each several times, plus two writes that do *not* match (wrong length).

# %%
DOORBELLS = """
.code16
_start:
    mov dx, 0x520
    mov ax, 0
    out dx, ax            # port 0x520, 2 bytes: matches
    out dx, ax
    out dx, ax
    out dx, al            # 1 byte: length mismatch -> an ordinary IO exit
    mov bx, 0x3000
    mov ds, bx            # DS base = GPA 0x30000
    mov dword ptr [0], 1  # 4 bytes: matches
    mov dword ptr [0], 2
    mov byte ptr [0], 3   # 1 byte: length mismatch -> an ordinary MMIO exit
    xor al, al
    out 0xf4, al
"""

def doorbell_demo(source=DOORBELLS):
    with Machine(mode="real", memory=0x20000) as m:
        m.load(asm.assemble(source, base=0x1000))
        m.add_ioeventfd(0x520, 2, pio=True)
        m.add_ioeventfd(0x30000, 4)
        result = m.run()
        return result, m.ioeventfd_counts()

result, counts = doorbell_demo()

# %% check
print("eventfd counters:", counts)
for e in result.exits:
    where = f"port={e['port']:#x} size={e['size']}" if e["reason"] == "IO" else f"phys_addr={e['phys_addr']:#x} len={e['len']}"
    print(e["reason"], where)
# %% [expect]
# eventfd counters: {'pio:0x520+2': 3, 'mmio:0x30000+4': 2}
# IO port=0x520 size=1
# MMIO phys_addr=0x30000 len=1
# IO port=0xf4 size=1

# %% [markdown]
# Five doorbell rings, zero exits for them. The three exits are the two mismatched writes
# and the final debug exit.
#
# The wiring widget shows the eventfds of a machine and what they are bound to:

# %%
from kvmlab.widgets import Wiring
with Machine(mode="real", memory=0x20000, irqchip=True) as m:
    m.add_ioeventfd(0x520, 2, pio=True)
    m.add_ioeventfd(0x30000, 4)
    m.add_irqfd(4)
    print(Wiring(m))

# %% [markdown]
# ## Exercises
#
# **1.** An ioeventfd on port 0x520, length 1, with `datamatch=0x42`. The guest does
# `out dx, al` with al = 0x42, 0x43, 0x42. What is the eventfd counter afterwards?

# %%
answer = None   # a number

# %%
DATAMATCH = """
.code16
_start:
    mov dx, 0x520
    mov al, 0x42
    out dx, al
    mov al, 0x43
    out dx, al
    mov al, 0x42
    out dx, al
    xor al, al
    out 0xf4, al
"""
def datamatch_count():
    with Machine(mode="real", memory=0x20000) as m:
        m.load(asm.assemble(DATAMATCH, base=0x1000))
        name = m.add_ioeventfd(0x520, 1, pio=True, datamatch=0x42)
        m.run()
        return m.ioeventfd_counts()[name]

# %% check
check(answer, datamatch_count(), hint="with DATAMATCH, only writes of exactly that value count")
# %% [expect]
# not answered yet: set `answer` in the cell above, run it, then run this cell again

# %% check
print("counter:", datamatch_count())
# %% [expect]
# counter: 2

# %% [markdown]
# **2.** What does `KVM_IRQFD` return on a VM **without** `KVM_CREATE_IRQCHIP`? (An errno
# name.)

# %%
answer = None   # an errno name

# %%
import errno
def irqfd_without_irqchip():
    vm = kvmlab.open().create_vm()
    efd = os.eventfd(0)
    try:
        vm.irqfd(efd, 4)
        return "no error"
    except kvmlab.KvmError as e:
        return errno.errorcode[e.errno]
    finally:
        os.close(efd)

# %% check
check(answer, irqfd_without_irqchip(), hint="there is no interrupt controller in the kernel to raise the line on")
# %% [expect]
# not answered yet: set `answer` in the cell above, run it, then run this cell again

# %% check
print("KVM_IRQFD without irqchip:", irqfd_without_irqchip())
# %% [expect]
# KVM_IRQFD without irqchip: EINVAL

# %% [markdown]
# **3.** Run the irqfd demo with the eventfd written after 0.5 s instead of 0.2 s. How many
# exits does the run have now?

# %%
answer = None   # a number

# %% check
slow = irq_demo(delay=0.5)
check(answer, sum(slow.exit_counts.values()), hint="a halted vCPU waits inside KVM_RUN, however long")
# %% [expect]
# not answered yet: set `answer` in the cell above, run it, then run this cell again

# %% check
print("exits:", slow.exit_counts)
# %% [expect]
# exits: {'IO': 33}

# %% [markdown]
# Next: **lesson 07**, paging and the MMU.
