# %% [markdown]
# # Lesson 04 — Exits and the userspace exit loop
#
# **You will** write the heart of every VMM — the loop around `KVM_RUN` — and make a guest
# exit for port I/O, MMIO, `hlt`, a triple fault and an instruction fetch from nowhere.
#
# **You will learn** the difference between a *VM exit* (the CPU leaves the guest) and a
# *userspace exit* (`KVM_RUN` returns), the `kvm_run` fields of each `KVM_EXIT_*` reason,
# how an `IN` or MMIO read is completed on the next `KVM_RUN`, and the exit statistics.
#
# **You need** lesson 03 (a vCPU by hand, the `kvm_run` page).

# %% [markdown]
# ## 1. Two kinds of exit
#
# When the guest does something the CPU cannot let it do alone (port I/O, touching an
# address with no RAM behind it, `hlt`, ...), the CPU performs a **VM exit** into KVM. The
# vendor module reads *why* (the VMX exit reason or SVM exit code, lesson 09) and calls a
# handler — `vmx_handle_exit()` / `svm_handle_exit()` dispatching to e.g. `handle_io()`,
# `handle_ept_misconfig()`, `kvm_emulate_halt()`. Most VM exits are handled inside the
# kernel and the guest resumes at once. When a handler needs the VMM, it fills in `struct
# kvm_run` and returns 0, and `KVM_RUN` returns to userspace: a **userspace exit**.
#
# | `exit_reason` | when | `kvm_run` member |
# |---|---|---|
# | `KVM_EXIT_IO` (2) | `in`/`out`/`ins`/`outs` to a port no in-kernel device owns | `io`: direction, size, port, count, data_offset |
# | `KVM_EXIT_MMIO` (6) | access to a GPA without a memslot (or a write to a READONLY slot) that no in-kernel device owns | `mmio`: phys_addr, data[8], len, is_write |
# | `KVM_EXIT_HLT` (5) | `hlt` without an in-kernel LAPIC | — |
# | `KVM_EXIT_SHUTDOWN` (8) | triple fault | — |
# | `KVM_EXIT_INTERNAL_ERROR` (17) | KVM cannot continue, e.g. cannot emulate an instruction | `internal`: suberror, ndata, data[] |
# | `KVM_EXIT_INTR` (10) | a signal interrupted `KVM_RUN` (errno EINTR) | — |
#
# ## 2. An exit loop, by hand
#
# The VMM's loop: run, look at `exit_reason`, emulate the device, run again. One rule
# matters: **an `IN` or an MMIO read is completed on the next `KVM_RUN`**. At the exit the
# guest's instruction is still pending; the VMM writes the value into the `kvm_run` page
# (the PIO data page, or `mmio.data`), and KVM finishes the instruction when it re-enters.
# (`exit.complete(value)` does that write.)

# %%
import kvmlab
from kvmlab import asm, KVM_EXIT_IO, KVM_EXIT_MMIO, KVM_EXIT_HLT
from kvmlab.exercise import check

def fresh_vcpu(source: str, at=0x1000):
    """A new VM: 64 KiB of RAM at GPA 0 (slot 0), the guest at `at`, vCPU 0 in real mode at it."""
    vm = kvmlab.open().create_vm()
    mem = kvmlab.GuestMemory(0x10000)
    vm.set_user_memory_region(slot=0, guest_phys_addr=0, memory=mem)
    mem.write(at, asm.assemble(source, base=at).code)
    vcpu = vm.create_vcpu(0)
    sregs = vcpu.get_sregs()
    sregs.cs.selector, sregs.cs.base = 0, 0
    vcpu.set_sregs(sregs)
    vcpu.set_regs(rip=at, rsp=0x8000, rflags=0x2)
    return vm, mem, vcpu


def exit_loop(vcpu, in_ports=None, max_exits=100):
    """Run until an exit we do not continue from. Ports in `in_ports` answer INs with a
    value; MMIO is a dict of registers. Returns (exits, console text, mmio registers)."""
    in_ports = in_ports or {}
    console, mmio, log = "", {}, []
    while len(log) < max_exits:
        e = vcpu.run()
        log.append(e)
        if e.reason == KVM_EXIT_IO and e.is_out:
            if e.port == 0x3F8:
                console += e.data.decode()
        elif e.reason == KVM_EXIT_IO:                       # IN: supply the value now
            e.complete(in_ports.get(e.port, 0xFF))
        elif e.reason == KVM_EXIT_MMIO and e.is_write:
            mmio[e.phys_addr] = e.value
        elif e.reason == KVM_EXIT_MMIO:                     # MMIO read: supply the value now
            e.complete(mmio.get(e.phys_addr, 0))
        else:
            break                                           # HLT, SHUTDOWN, INTERNAL_ERROR, ...
    return log, console, mmio

# %% [markdown]
# The guest reads a key code from port 0x60, prints it on the serial port, then uses a
# "device" at GPA 0x20010 — there is no memslot there, so both accesses are MMIO exits.

# %%
GUEST = """
.code16
_start:
    in al, 0x60                      # IN exit; the VMM answers 0x41
    mov dx, 0x3f8
    out dx, al                       # OUT exit: print it
    mov bx, 0x2000
    mov ds, bx                       # DS base 0x20000: no memslot there
    mov word ptr [0x10], 0x1234      # MMIO write, 2 bytes at GPA 0x20010
    mov cx, [0x10]                   # MMIO read: the VMM returns what was written
    hlt
"""
vm, mem, vcpu = fresh_vcpu(GUEST)
log, console, mmio = exit_loop(vcpu, in_ports={0x60: 0x41})

# %% check
for e in log:
    print(e)
regs = vcpu.get_regs()
print(f"console={console!r} al={regs.rax & 0xFF:#x} cx={regs.rcx & 0xFFFF:#x}")
# %% [expect]
# <IO IN port=0x60 size=1 count=1>
# <IO OUT port=0x3f8 size=1 count=1 data=41>
# <MMIO write phys_addr=0x20010 len=2 data=3412>
# <MMIO read phys_addr=0x20010 len=2>
# <HLT>
# console='A' al=0x41 cx=0x1234

# %% [markdown]
# Things to notice:
#
# * The `IN` exit carries no data: the VMM provides it. The `OUT` exit carries the byte in
#   the PIO data page.
# * MMIO data is little endian: the word 0x1234 is the bytes `34 12`.
# * The MMIO read completed with the value our "device" stored, and the guest saw it in `cx`.
#
# ### The exit statistics
#
# KVM counts exits per vCPU (`struct kvm_vcpu_stat` in `arch/x86/include/asm/kvm_host.h`,
# read with `KVM_GET_STATS_FD`): `exits` counts every VM exit, `io_exits`, `mmio_exits` and
# `halt_exits` the ones by cause. (On this course's test machine, whose KVM is a software
# "PVM" backend, `io_exits` stays 0; upstream KVM counts them, as the simulator does.)

# %% check
st = vcpu.stats()
print({k: st[k] for k in ("io_exits", "mmio_exits", "halt_exits")})
# %% [expect]
# {'io_exits': 2, 'mmio_exits': 2, 'halt_exits': 1}

# %% [markdown]
# ## 3. Exits that end a run: SHUTDOWN and INTERNAL_ERROR
#
# **Triple fault.** If the CPU hits an exception while delivering an exception while
# delivering an exception (e.g. there is no usable IDT), it shuts down: a *triple fault*.
# VMX reports it as exit reason `TRIPLE_FAULT`, SVM as `SHUTDOWN`; KVM turns both into
# `KVM_EXIT_SHUTDOWN`. A real PC would reset; a VMM usually stops or resets the VM.
#
# From here on `kvmlab.vmm.Machine` sets up the VM (it can start the vCPU in 32-bit
# protected mode, with a GDT but no IDT) and runs an exit loop like ours, dispatching IO
# and MMIO to devices on two buses (`kvmlab.vmm.handle_exit`).

# %%
from kvmlab.vmm import Machine

def run_source(source, mode="protected", **kw):
    with Machine(mode=mode, **kw) as m:
        m.load(asm.assemble(source, base=0x1000))
        return m.run()

TRIPLE = """
.code32
_start:
    mov al, '!'
    mov dx, 0x3f8
    out dx, al
    ud2                  # #UD -> no IDT -> #GP -> #DF -> triple fault
"""
result = run_source(TRIPLE)

# %% check
print(result.summary())
# %% [expect]
# stopped: shutdown; exits: IO 1, SHUTDOWN 1; rip=0x1007

# %% [markdown]
# **Fetch from nowhere.** Data accesses to a GPA without memory become MMIO exits, but an
# *instruction fetch* cannot be emulated from a device: KVM's instruction emulator gives up
# with `KVM_EXIT_INTERNAL_ERROR`, suberror 1 = `KVM_INTERNAL_ERROR_EMULATION`.

# %%
NOWHERE = """
.code32
_start:
    mov eax, 0x40000000      # 1 GiB: no memslot there
    jmp eax
"""
result = run_source(NOWHERE)

# %% check
last = result.exits[-1]
print(result.stop_reason, "suberror", last["suberror"])
# %% [expect]
# internal_error suberror 1

# %% [markdown]
# ## 4. Watching the exits
#
# `Machine.run()` records every exit (`result.exits`) and counts them
# (`result.exit_counts`). A compact timeline of the serial "hello" guest from lesson 00: each
# letter is one exit (I = IN, O = OUT, H = HLT, M = MMIO).

# %%
def timeline(exits, width=64):
    sym = {"IO": lambda e: "O" if e.get("direction") == 1 else "I", "MMIO": lambda e: "M",
           "HLT": lambda e: "H", "SHUTDOWN": lambda e: "S", "INTERNAL_ERROR": lambda e: "E"}
    s = "".join(sym.get(e["reason"], lambda e: "?")(e) for e in exits)
    return "\n".join(s[i:i + width] for i in range(0, len(s), width))

HELLO = r"""
.code16
_start:
    mov si, offset msg
1:  lodsb
    test al, al
    jz 3f
    mov ah, al
    mov dx, 0x3fd
2:  in al, dx
    test al, 0x20
    jz 2b
    mov al, ah
    mov dx, 0x3f8
    out dx, al
    jmp 1b
3:  hlt
msg: .asciz "exits!\n"
"""
result = run_source(HELLO, mode="real")

# %% check
print(result.console, end="")
print(timeline(result.exits))
print(result.exit_counts)
# %% [expect]
# exits!
# IOIOIOIOIOIOIOH
# {'IO': 14, 'HLT': 1}

# %% [markdown]
# The exit monitor widget shows the same run: counts by reason, a timeline, and one exit
# in detail (its `kvm_run` fields and the guest instruction that caused it; on the
# simulator also the hardware exit code). To watch a run *live*, display the monitor with
# `.live()` in one cell and start the guest with `machine.start()` in the next: Jupyter
# updates widgets only between cells, so the vCPU must run in a background thread.

# %%
from kvmlab.widgets import ExitMonitor
hello_machine = Machine(mode="real")
hello_machine.load(asm.assemble(HELLO, base=0x1000))
monitor = ExitMonitor(hello_machine).live()
monitor

# %%
handle = hello_machine.start()          # runs in a background thread; the monitor follows it
handle.wait().summary()

# %% [markdown]
# ## Exercises
#
# **1.** `rep outsb` writes `cx` bytes from memory to a port. With `cx = 4`, how many
# `KVM_EXIT_IO` exits does it cause? (A number.)

# %%
answer = None   # a number

# %%
REP_OUTSB = """
.code16
_start:
    mov si, offset data
    mov cx, 4
    mov dx, 0x3f8
    rep outsb
    hlt
data: .ascii "KVM!"
"""
def io_exits(source):
    vm, mem, vcpu = fresh_vcpu(source)
    log, console, _ = exit_loop(vcpu)
    return sum(e.reason == KVM_EXIT_IO for e in log), console

# %% check
check(answer, io_exits(REP_OUTSB)[0], hint="KVM's emulator hands string OUTs to userspace one element per exit")
# %% [expect]
# not answered yet: set `answer` in the cell above, run it, then run this cell again

# %% check
n, text = io_exits(REP_OUTSB)
print(f"{n} IO exits, console {text!r}")
# %% [expect]
# 4 IO exits, console 'KVM!'

# %% [markdown]
# **2.** The guest reads a 32-bit value from GPA 0x20000 (no memslot) with
# `mov eax, dword ptr [0]` and `DS` = 0x2000. What is `len` in the MMIO exit? (A number.)

# %%
answer = None   # a number

# %%
def mmio_len():
    vm, mem, vcpu = fresh_vcpu(".code16\n_start: mov bx, 0x2000\n mov ds, bx\n mov eax, dword ptr [0]\n hlt\n")
    e = vcpu.run()
    return e.len if e.reason == KVM_EXIT_MMIO else None

# %% check
check(answer, mmio_len(), hint="the size of the access")
# %% [expect]
# not answered yet: set `answer` in the cell above, run it, then run this cell again

# %% check
print("mmio.len =", mmio_len())
# %% [expect]
# mmio.len = 4

# %% [markdown]
# **3.** Our `exit_loop` answers every `IN` from an unknown port with 0xFF. The guest does
# `in al, 0x71` then `hlt`. What is `al` at the HLT exit? And what would `al` be if the VMM
# did *not* call `complete()` and the PIO data page still held 0xFF from an earlier exit?
# (Answer the first question, a number.)

# %%
answer = None   # a number

# %%
def al_after_in():
    vm, mem, vcpu = fresh_vcpu(".code16\n_start: in al, 0x71\n hlt\n")
    exit_loop(vcpu)
    return vcpu.get_regs().rax & 0xFF

# %% check
check(answer, al_after_in(), hint="the VMM's value lands in al when KVM re-enters")
# %% [expect]
# not answered yet: set `answer` in the cell above, run it, then run this cell again

# %% check
print(f"al = {al_after_in():#x}")
# %% [expect]
# al = 0xff

# %% [markdown]
# (Second question: also 0xFF — KVM copies whatever is in the data page when it completes
# the `IN`. Forgetting to write it gives the guest stale data, not an error.)
#
# Next: **lesson 05**, the coalesced MMIO ring: fewer exits for write-only device registers.
