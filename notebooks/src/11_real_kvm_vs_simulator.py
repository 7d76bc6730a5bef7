# %% [markdown]
# # Lesson 11 — Real `/dev/kvm` and the simulator, side by side
#
# **You will** run the course's guests on the real KVM of this machine (if it has one) and on
# kvmlab's simulated KVM, and compare what comes back: exits, registers, memory, console.
#
# **You will learn** what the simulator promises (the same ioctls, structs, errnos and exits
# as upstream KVM), where a real host can legitimately differ (vendor module, KVM version,
# nested setups), and what only the simulator can show you.
#
# **You need** lessons 01–04. For the real-KVM cells: Linux with a usable `/dev/kvm`
# (read/write access, e.g. membership of the `kvm` group). **Cells that need `/dev/kvm`
# say so and skip themselves without it**; everything else runs anywhere.

# %%
import pathlib
import kvmlab
from kvmlab.vmm import Machine
from kvmlab.hw import unusable_reason
from kvmlab.exercise import check

WHY_NOT_HW = unusable_reason()
HW = WHY_NOT_HW is None
print("/dev/kvm:", "usable" if HW else f"not usable here ({WHY_NOT_HW}) -- the real-KVM cells will skip")

GUESTS = next(p for p in (pathlib.Path("../guests"), pathlib.Path("guests")) if p.is_dir())
print(sorted(p.name for p in GUESTS.glob("*.S")))

# %% [markdown]
# ## 1. The same API in front of two kernels
#
# Nothing above the backend knows which one it talks to: `kvmlab.open("hw")` sends each
# ioctl to `/dev/kvm` with `fcntl.ioctl`, `kvmlab.open("sim")` to the simulated kernel, with
# the **same request numbers and the same struct bytes**. The vCPU's `kvm_run` page is the
# real `mmap` of the vCPU fd in one case and a buffer the simulated kernel writes in the
# other, decoded by the same code.
#
# `run(guest, backend)` runs one guest file with `kvmlab.vmm.Machine` and keeps what should
# not depend on the backend: why it stopped, the exit counts, the console text, the final
# general registers and a hash of guest RAM.

# %%
def run(guest, backend):
    with Machine.from_file(GUESTS / guest, backend=backend) as m:
        r = m.run(timeout=60)
    return {"stop": r.stop_reason, "status": r.status, "exits": r.exit_counts, "console": r.console,
            "regs": {k: v for k, v in r.regs.items()}, "ram_sha256": r.memory_sha256[:16],
            "elapsed": r.elapsed}

COMPARE = ("stop", "status", "exits", "console", "regs", "ram_sha256")
GUEST_LIST = ["hello.S", "hello32.S", "hello64.S", "pio.S", "mmio.S", "readonly.S", "coalesced.S",
              "ioeventfd.S", "paging.S"]

# %% [markdown]
# On the simulator (runs anywhere):

# %% check
sim = {g: run(g, "sim") for g in GUEST_LIST}
for g, r in sim.items():
    print(f"{g:<12} {r['stop']:<10} status={r['status']} exits={r['exits']}")
# %% [expect]
# hello.S      debug_exit status=0 exits={'IO': 45}
# hello32.S    debug_exit status=0 exits={'IO': 55}
# hello64.S    debug_exit status=0 exits={'IO': 45}
# pio.S        debug_exit status=0 exits={'IO': 63}
# mmio.S       debug_exit status=0 exits={'MMIO': 8, 'IO': 9}
# readonly.S   debug_exit status=0 exits={'MMIO': 1, 'IO': 29}
# coalesced.S  debug_exit status=0 exits={'MMIO': 1, 'IO': 1}
# ioeventfd.S  debug_exit status=0 exits={'IO': 17, 'MMIO': 1}
# paging.S     debug_exit status=0 exits={'IO': 49}

# %% [markdown]
# ## 2. On real KVM — *needs `/dev/kvm`*
#
# The same guests on this machine's KVM, then a field-by-field comparison.

# %%
if not HW:
    print(f"skipped: this cell needs a usable /dev/kvm ({WHY_NOT_HW})")
    hw = {}
else:
    hw = {g: run(g, "hw") for g in GUEST_LIST}
    for g in GUEST_LIST:
        diff = [k for k in COMPARE if hw[g][k] != sim[g][k]]
        print(f"{g:<12} {'same' if not diff else 'DIFFERENT: ' + ', '.join(diff)}")

# %% [markdown]
# And how long each took (wall-clock, including Python's exit loop; the simulator's first
# run in a fresh installation also includes compiling it):

# %%
if not HW:
    print(f"skipped: this cell needs a usable /dev/kvm ({WHY_NOT_HW})")
else:
    print(f"{'guest':<12} {'hw':>9} {'sim':>9}")
    for g in GUEST_LIST:
        print(f"{g:<12} {hw[g]['elapsed'] * 1e3:7.1f}ms {sim[g]['elapsed'] * 1e3:7.1f}ms")

# %% [markdown]
# ## 3. Where a real host may differ — and why that is fine
#
# The simulator follows **upstream** KVM with the Intel (default) or AMD vendor module. A
# real host runs *its* KVM: a particular kernel version, one vendor module, maybe nested
# inside another hypervisor. The generic layer (memslots, io buses, coalesced MMIO, eventfds,
# irqchip, stats names, the `kvm_run` layout and exit semantics) is the same everywhere; the
# vendor-specific corners are not. On the machine this course is tested on — a cloud VM
# whose KVM is a software backend called "PVM", neither VMX nor SVM — we measured:
#
# | what | upstream (and the simulator) | PVM test host |
# |---|---|---|
# | `io_exits` statistic | counts port I/O exits | stays 0 |
# | RIP when an `OUT` exit reaches userspace | still on the `out` (advanced on re-entry) | already past it |
# | paging | all modes | long mode only |
# | `int3` with `KVM_GUESTDBG_USE_SW_BP` | `KVM_EXIT_DEBUG` | delivered to the guest |
# | invalid segment state | `KVM_EXIT_FAIL_ENTRY` (VMX) | runs anyway |
# | triple fault on AMD | vCPU INIT-reset before `KVM_EXIT_SHUTDOWN` | state kept |
#
# "RIP at an exit" is not part of the ABI (only the state after re-entry is), which is why
# `Machine.run` completes a pending I/O instruction before reporting registers: so the final
# registers above compare equal.
#
# What only the simulator can show, because on a real host it lives inside the kernel:

# %% check
sim_kvm = kvmlab.open("sim")
vm = sim_kvm.create_vm()
print("vm.kernel on sim:", type(vm.kernel).__name__)
print("hardware_exit_code hook on sim:", hasattr(sim_kvm.backend, "hardware_exit_code"))
# %% [expect]
# vm.kernel on sim: KernelView
# hardware_exit_code hook on sim: True

# %%
if not HW:
    print(f"skipped: this cell needs a usable /dev/kvm ({WHY_NOT_HW})")
else:
    real_vm = kvmlab.open("hw").create_vm()
    try:
        real_vm.kernel
    except AttributeError as e:
        print("vm.kernel on hw:", e)
    print("hardware_exit_code on hw:", real_vm.create_vcpu(0).hardware_exit_code)

# %% [markdown]
# ## Exercises
#
# **1.** `hello.S` prints a 22-character line, waiting for the serial port before each
# character, and then writes the debug-exit port. How many IO exits does it cause on real
# KVM? (A number; the reveal runs it on the simulator, which must agree.)

# %%
answer = None   # a number

# %% check
check(answer, sim["hello.S"]["exits"]["IO"], hint="per character: one IN (the port is always ready) and one OUT")
# %% [expect]
# not answered yet: set `answer` in the cell above, run it, then run this cell again

# %% check
print("IO exits of hello.S on sim:", sim["hello.S"]["exits"]["IO"])
# %% [expect]
# IO exits of hello.S on sim: 45

# %% [markdown]
# **2.** Which `kvm_vcpu_stat` counter from the table above would you *not* use in a test
# that must pass on every host? (A stat name.)

# %%
answer = None   # a stat name

# %% check
check(answer, "io_exits", hint="look at the first row of the table")
# %% [expect]
# not answered yet: set `answer` in the cell above, run it, then run this cell again

# %% check
def io_exits_on(backend):
    with Machine.from_file(GUESTS / "pio.S", backend=backend) as m:
        m.run(timeout=60)
        return m.vcpu.stats()["io_exits"]
print("io_exits for pio.S on sim:", io_exits_on("sim"))
# %% [expect]
# io_exits for pio.S on sim: 63

# %%
if HW:
    print("io_exits for pio.S on this host's /dev/kvm:", io_exits_on("hw"))
else:
    print(f"skipped: this cell needs a usable /dev/kvm ({WHY_NOT_HW})")

# %% [markdown]
# That is the end of the course. Where to go from here: read `virt/kvm/kvm_main.c` with the
# lessons in mind, then kvmtool (`github.com/kvmtool/kvmtool`) — a complete VMM in a few
# thousand lines — and Firecracker's `src/vmm`.
