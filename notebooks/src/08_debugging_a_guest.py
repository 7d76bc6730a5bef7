# %% [markdown]
# # Lesson 08 — Debugging a guest
#
# **You will** single-step a guest instruction by instruction, stop it at a hardware
# breakpoint, a software breakpoint (`int3`) and a data watchpoint, and read its registers
# and code at each stop — the things `gdb` does through QEMU's gdbstub.
#
# **You will learn** `KVM_SET_GUEST_DEBUG` and its control bits, `KVM_EXIT_DEBUG` and its
# `debug.arch` fields (`exception`, `pc`, `dr6`, `dr7`), the x86 debug registers DR0–DR7,
# and how a debugger steps over a breakpoint.
#
# **You need** lessons 03 (registers) and 04 (exits).

# %% [markdown]
# ## 1. `KVM_SET_GUEST_DEBUG`
#
# A debugger *outside* the guest must stop it without the guest's cooperation. KVM does it
# with the CPU's own debug features, but intercepts the resulting exceptions instead of
# delivering them to the guest (`kvm_arch_vcpu_ioctl_set_guest_debug` in
# `arch/x86/kvm/x86.c`; the vendor module updates its exception bitmap so `#DB` and `#BP`
# cause VM exits):
#
# | control bit | effect | exit `debug.arch.exception` |
# |---|---|---|
# | `KVM_GUESTDBG_ENABLE` | debugging on | |
# | `KVM_GUESTDBG_SINGLESTEP` | set RFLAGS.TF behind the guest's back: exit after each instruction | 1 (#DB), `dr6.BS` set |
# | `KVM_GUESTDBG_USE_HW_BP` | load the debugger's DR0–DR3/DR7 (`arch.debugreg`) | 1 (#DB), `dr6.Bn` = which one |
# | `KVM_GUESTDBG_USE_SW_BP` | intercept `int3` (the debugger wrote `0xCC` into guest code) | 3 (#BP) |
#
# `debug.arch.pc` is the *linear* address where the guest stopped (CS.base + RIP).

# %%
import kvmlab
from kvmlab import asm, KVM_EXIT_DEBUG, KVM_EXIT_HLT
from kvmlab.vmm import Machine
from kvmlab.exercise import check

SUM = """
.code16
_start:
    mov cx, 3
    xor ax, ax
again:
    add ax, cx          # ax = 3 + 2 + 1
    loop again
done:
    mov [0x3000], ax    # store the result
    mov bx, ax
    hlt
"""
prog = asm.assemble(SUM, base=0x1000)
for insn in prog.disassemble():
    print(insn)
print({k: hex(v) for k, v in prog.symbols.items()})

# %%
def fresh(source=SUM):
    """A new Machine (real mode) with `source` loaded; returns (machine, program)."""
    m = Machine(mode="real")
    p = asm.assemble(source, base=0x1000)
    m.load(p)
    return m, p

# %% [markdown]
# ## 2. Single-stepping
#
# Each `run()` with `singlestep=True` executes one instruction and exits with
# `KVM_EXIT_DEBUG`. We print where the guest stopped and the instruction it will execute
# next, plus `ax` and `cx`.

# %% check
m, prog = fresh()
m.vcpu.set_guest_debug(singlestep=True)
for step in range(8):
    e = m.vcpu.run()
    r = m.vcpu.get_regs()
    nxt = prog.disassemble(e.pc, 1)[0]
    print(f"#{step + 1} exc={e.exception} dr6={e.dr6:#x} ax={r.rax & 0xFFFF} cx={r.rcx & 0xFFFF}  next: {nxt}")
m.close()
# %% [expect]
# #1 exc=1 dr6=0xffff4ff0 ax=0 cx=3  next: 0x1003: xor ax, ax
# #2 exc=1 dr6=0xffff4ff0 ax=0 cx=3  next: 0x1005: add ax, cx
# #3 exc=1 dr6=0xffff4ff0 ax=3 cx=3  next: 0x1007: loop 0x1005
# #4 exc=1 dr6=0xffff4ff0 ax=3 cx=2  next: 0x1005: add ax, cx
# #5 exc=1 dr6=0xffff4ff0 ax=5 cx=2  next: 0x1007: loop 0x1005
# #6 exc=1 dr6=0xffff4ff0 ax=5 cx=1  next: 0x1005: add ax, cx
# #7 exc=1 dr6=0xffff4ff0 ax=6 cx=1  next: 0x1007: loop 0x1005
# #8 exc=1 dr6=0xffff4ff0 ax=6 cx=0  next: 0x1009: mov word ptr [0x3000], ax

# %% [markdown]
# `dr6 = 0xFFFF4FF0`: bit 14 (**BS**, "single step") is set on top of DR6's always-one bits.
# The registers widget shows the same state, with what changed highlighted:

# %%
from kvmlab.widgets import Registers
m, prog = fresh()
m.vcpu.set_guest_debug(singlestep=True)
regs_view = Registers(m, sregs=False)
for _ in range(3):
    m.vcpu.run()
regs_view.refresh()

# %% [markdown]
# ## 3. A hardware breakpoint
#
# x86 has four breakpoint address registers DR0–DR3; DR7 enables them (bit 0 = L0 for DR0,
# bits 16–17 = what to watch: 00 execute, 01 write, 11 read/write; bits 18–19 = length).
# With `USE_HW_BP`, KVM loads the debugger's values (`arch.debugreg[0..7]`) into the real
# debug registers while the guest runs. An execute breakpoint fires **before** the
# instruction runs.

# %% check
m, prog = fresh()
done = prog.symbols["done"]
m.vcpu.set_guest_debug(hw_bp=True, debugreg=[done, 0, 0, 0, 0, 0, 0, 0x1])   # DR0 = done, DR7.L0
e = m.vcpu.run()
r = m.vcpu.get_regs()
print(e.name, f"exception={e.exception} pc={e.pc:#x} dr6={e.dr6:#x}", "| ax =", r.rax & 0xFFFF)
print("stopped before:", prog.disassemble(e.pc, 1)[0])
# %% [expect]
# DEBUG exception=1 pc=0x1009 dr6=0xffff0ff1 | ax = 6
# stopped before: 0x1009: mov word ptr [0x3000], ax

# %% [markdown]
# `dr6` bit 0 (**B0**) says DR0 matched. To continue, a debugger cannot just run again —
# the breakpoint would fire at once. It removes the breakpoint, single-steps over the
# instruction, puts the breakpoint back and continues (gdb does exactly this):

# %% check
m.vcpu.set_guest_debug(singlestep=True)              # breakpoint off, one step
e = m.vcpu.run()
m.vcpu.set_guest_debug(hw_bp=True, debugreg=[done, 0, 0, 0, 0, 0, 0, 0x1])
e = m.vcpu.run()
print(e.name, "| [0x3000] =", int(m.memory.view("<u2", 0x3000, 1)[0]), "| bx =", m.vcpu.get_regs().rbx & 0xFFFF)
m.close()
# %% [expect]
# HLT | [0x3000] = 6 | bx = 6

# %% [markdown]
# ## 4. A software breakpoint
#
# Hardware has only four breakpoints; a debugger can set any number of **software**
# breakpoints by overwriting the first byte of an instruction with `int3` (0xCC). With
# `USE_SW_BP`, KVM intercepts the resulting `#BP` and exits with `exception = 3` and `pc` =
# the address **of the `int3`** — the guest's RIP is left there. The debugger restores the
# original byte before continuing.

# %% check
m, prog = fresh()
bp = prog.symbols["again"]
saved = m.memory[bp]
m.memory[bp] = 0xCC                                   # plant int3
m.vcpu.set_guest_debug(sw_bp=True)
e = m.vcpu.run()
print(e.name, f"exception={e.exception} pc={e.pc:#x} rip={m.vcpu.get_regs().rip:#x}")
m.memory[bp] = saved                                  # restore and continue
m.vcpu.set_guest_debug(enable=False)
print(m.vcpu.run().name, "| bx =", m.vcpu.get_regs().rbx & 0xFFFF)
m.close()
# %% [expect]
# DEBUG exception=3 pc=0x1005 rip=0x1005
# HLT | bx = 6

# %% [markdown]
# ## 5. A data watchpoint
#
# DR7 bits 16–17 = 01 turn DR*n* into a **write** watchpoint; bits 18–19 give the length
# (00 = 1 byte, 01 = 2 bytes, 11 = 4 bytes). Data breakpoints are *traps*: the exit comes
# after the write, with `pc` at the next instruction.

# %% check
m, prog = fresh()
dr7 = 0x1 | (0b01 << 16) | (0b01 << 18)              # L0, write, 2 bytes
m.vcpu.set_guest_debug(hw_bp=True, debugreg=[0x3000, 0, 0, 0, 0, 0, 0, dr7])
e = m.vcpu.run()
print(e.name, f"exception={e.exception} pc={e.pc:#x} dr6 B0={e.dr6 & 1}", "| [0x3000] =", int(m.memory.view("<u2", 0x3000, 1)[0]))
m.close()
# %% [expect]
# DEBUG exception=1 pc=0x100c dr6 B0=1 | [0x3000] = 6

# %% [markdown]
# ## 6. The stepper widget
#
# `kvmlab.widgets.Stepper` packages all of this: breakpoints on labels (hardware
# breakpoints in DR0–DR3), `step()`, `cont()`, and a disassembly window around `rip`.

# %%
from kvmlab.widgets import Stepper
m, prog = fresh()
stepper = Stepper(m)
stepper.add_breakpoint("done")
print(stepper.cont())
stepper

# %%
print(stepper.step())
stepper.show()

# %% [markdown]
# *Differences you may meet:* on this course's test machine (a software "PVM" KVM backend)
# single-step and execute breakpoints work as above, but `int3` is not intercepted (the
# guest gets the `#BP` itself) and data watchpoints never fire. The simulator follows
# upstream KVM on Intel/AMD, as shown here.
#
# ## Exercises
#
# **1.** Starting at `_start` with single-step on, how many `KVM_EXIT_DEBUG` exits until
# `pc` equals the address of `done`? (A number.)

# %%
answer = None   # a number

# %%
def steps_to(label):
    m, p = fresh()
    m.vcpu.set_guest_debug(singlestep=True)
    n = 0
    while True:
        n += 1
        if m.vcpu.run().pc == p.symbols[label]:
            m.close()
            return n

# %% check
check(answer, steps_to("done"), hint="2 instructions before the loop, then 2 per iteration")
# %% [expect]
# not answered yet: set `answer` in the cell above, run it, then run this cell again

# %% check
print("single steps to reach done:", steps_to("done"))
# %% [expect]
# single steps to reach done: 8

# %% [markdown]
# **2.** A hardware execute breakpoint in **DR2** fires. Which bit of `dr6` is set? (A bit
# number.)

# %%
answer = None   # a bit number

# %%
def dr6_bit_for_dr2():
    m, p = fresh()
    m.vcpu.set_guest_debug(hw_bp=True, debugreg=[0, 0, p.symbols["done"], 0, 0, 0, 0, 1 << 4])   # L2
    e = m.vcpu.run()
    m.close()
    return (e.dr6 & 0xF).bit_length() - 1

# %% check
check(answer, dr6_bit_for_dr2(), hint="B0..B3 are bits 0..3")
# %% [expect]
# not answered yet: set `answer` in the cell above, run it, then run this cell again

# %% check
print("dr6 bit:", dr6_bit_for_dr2())
# %% [expect]
# dr6 bit: 2

# %% [markdown]
# **3.** With a software breakpoint planted on `done`, what is `bx` when the
# `KVM_EXIT_DEBUG` arrives? (A number.)

# %%
answer = None   # a number

# %%
def bx_at_sw_bp():
    m, p = fresh()
    m.vcpu.set_guest_debug(sw_bp=True)
    m.memory[p.symbols["done"]] = 0xCC
    m.vcpu.run()
    bx = m.vcpu.get_regs().rbx & 0xFFFF
    m.close()
    return bx

# %% check
check(answer, bx_at_sw_bp(), hint="the instruction at the breakpoint (and everything after it) has not run yet")
# %% [expect]
# not answered yet: set `answer` in the cell above, run it, then run this cell again

# %% check
print("bx =", bx_at_sw_bp())
# %% [expect]
# bx = 0

# %% [markdown]
# Next: **lesson 09**, `kvm_x86_ops`: the vendor modules.
