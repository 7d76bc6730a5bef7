# %% [markdown]
# # Lesson 00 — Setup check
#
# **You will** check that everything the lessons need works: the Python packages, the KVM
# backend, an interactive widget, and one tiny guest run from start to finish.
#
# **You will learn** what "the backend" is in kvmlab, and why the first guest run in a
# fresh installation takes a little while (the simulated CPU is compiled once).
#
# **You need** nothing but this notebook. Run the cells from top to bottom
# (Shift+Enter). Every lesson ends with exercises: you *predict* an answer, a *check* cell
# tells you whether you were right, and a *reveal* cell shows the real answer.

# %% [markdown]
# ## 1. Versions
#
# kvmlab needs Python 3.10 or newer. The lessons use `numpy` (guest memory is a numpy
# array), `numba` (it compiles the simulated CPU), `keystone`/`capstone` (to assemble and
# disassemble guests) and `ipywidgets` (for the live views).

# %%
import sys, platform
import numpy, numba, ipywidgets
import kvmlab

print("python    ", platform.python_version())
print("kvmlab    ", kvmlab.__version__)
print("numpy     ", numpy.__version__)
print("numba     ", numba.__version__)
print("ipywidgets", ipywidgets.__version__)

# %% check
print("Python 3.10 or newer:", sys.version_info >= (3, 10))
# %% [expect]
# Python 3.10 or newer: True

# %% [markdown]
# ## 2. The backend: which "KVM" are we talking to?
#
# On Linux, KVM is a kernel module. A program (a *VMM*, such as QEMU, Firecracker or
# kvmtool) opens the device file `/dev/kvm` and drives it with `ioctl()` calls. kvmlab
# gives you that same API from Python, with two interchangeable *backends* behind it:
#
# | backend | what answers the ioctls |
# |---|---|
# | `"sim"` (default) | `kvmlab.sim`, a simulated KVM kernel written after `virt/kvm/kvm_main.c` and friends, running guests on a simulated x86 CPU. Works anywhere, and can show you the kernel's insides. |
# | `"hw"` | the real `/dev/kvm` of this machine (Linux with KVM only). |
#
# `kvmlab.open()` opens the default backend (the simulator, unless the environment
# variable `KVMLAB_BACKEND` says otherwise). The very first ioctl every VMM makes is
# `KVM_GET_API_VERSION`: it has been **12** since 2007, and a VMM must refuse anything else.

# %% check
kvm = kvmlab.open()
print("backend:", kvm.backend_name)
print("KVM_GET_API_VERSION:", kvm.api_version)
print("KVM_GET_VCPU_MMAP_SIZE:", kvm.vcpu_mmap_size, "bytes =", kvm.vcpu_mmap_size // 4096, "pages")
# %% [expect]
# backend: sim
# KVM_GET_API_VERSION: 12
# KVM_GET_VCPU_MMAP_SIZE: 12288 bytes = 3 pages

# %% [markdown]
# ## 3. A widget renders
#
# The lessons show live views (registers, exits, page tables) made with `ipywidgets`. If
# the next cell shows a slider, widgets work in your front end. If it shows *"Error
# displaying widget"* instead, the `ipywidgets` package in the kernel and the
# `jupyterlab_widgets` extension in JupyterLab do not match: reinstall both with
# `pip install -U ipywidgets jupyterlab_widgets` and reload the page.

# %%
slider = ipywidgets.IntSlider(value=12, min=0, max=24, description="API version")
slider

# %% check
print(type(slider).__name__, "value", slider.value)
# %% [expect]
# IntSlider value 12

# %% [markdown]
# ## 4. A first guest, and the one-time compile
#
# Here is the smallest complete guest: 16-bit real-mode code that prints a line on the
# serial port and then reports success on a "debug exit" port. `kvmlab.vmm.Machine` is a
# tiny VMM (think kvmtool): it creates the VM, its memory and its vCPU, loads the code and
# runs the *exit loop*. You will build every one of those steps by hand in lessons 01–04.
#
# The simulated CPU is compiled to machine code by numba the first time it runs, and the
# result is cached on disk. In a fresh installation that first compile takes a while (up to
# a minute or two on a slow machine); afterwards a run starts in well under a second. The
# cell below runs the guest in a background thread and shows a progress bar meanwhile.

# %%
from kvmlab import asm
from kvmlab.vmm import Machine

HELLO = r"""
.intel_syntax noprefix
.code16
_start:
    mov si, offset msg
next:
    lodsb                   # al = [si], si += 1
    test al, al
    jz done
    mov ah, al
    mov dx, 0x3f8 + 5       # serial line status register
wait:
    in al, dx               # an IN exit: the VMM answers "ready to send"
    test al, 0x20
    jz wait
    mov al, ah
    mov dx, 0x3f8           # serial data register
    out dx, al              # an OUT exit: the VMM prints the character
    jmp next
done:
    xor al, al
    out 0xf4, al            # debug-exit port: status 0 = success
msg:
    .asciz "Hello from real mode!\n"
"""

# %%
import threading, time

def run_hello():
    with Machine(mode="real") as m:
        m.load(asm.assemble(HELLO, base=0x1000))
        return m.run(timeout=600)      # generous: the first run may include the compile

box = {}
worker = threading.Thread(target=lambda: box.update(result=run_hello()), daemon=True)
bar = ipywidgets.FloatProgress(value=0, min=0, max=1, description="first run")
label = ipywidgets.Label("")
display(ipywidgets.HBox([bar, label]))
t0 = time.monotonic()
worker.start()
while worker.is_alive():
    worker.join(0.25)
    waited = time.monotonic() - t0
    bar.value = waited / (waited + 10)           # we do not know how long: creep towards full
    label.value = f"compiling / running ... {waited:.0f} s"
bar.value, bar.bar_style = 1, "success"
label.value = f"done in {time.monotonic() - t0:.1f} s"
result = box["result"]

# %% [markdown]
# Run the cell above a second time: now the compiled CPU comes from the cache and the run
# takes a fraction of a second. What the guest printed, and how the run ended:

# %% check
print(result.console, end="")
print(result.summary())
# %% [expect]
# Hello from real mode!
# stopped: debug_exit (status 0); exits: IO 45; rip=0x101e

# %% [markdown]
# `exits: IO 45` means KVM returned to the VMM 45 times, every time because the guest did
# port I/O (`in` or `out`) that only the VMM can handle. Such a return from the `KVM_RUN`
# ioctl is called an **exit**; lesson 04 is all about them.
#
# ## Exercises
#
# **1.** The message `"Hello from real mode!\n"` has 22 characters. For each character the
# guest does one `in` (the serial port answers "ready" at once) and one `out`. After the
# message, one more `out` to port 0xF4 ends the run. How many IO exits would a guest cause
# for the 5-character message `"KVM!\n"`? Set `answer` and run the check cell.

# %%
answer = None   # your prediction: a number

# %%
from kvmlab.exercise import check

def io_exits_for(message: str) -> int:
    src = HELLO.replace("Hello from real mode!\\n", message.replace("\n", "\\n"))
    with Machine(mode="real") as m:
        m.load(asm.assemble(src, base=0x1000))
        return m.run().exit_counts.get("IO", 0)

# %% check
check(answer, io_exits_for("KVM!\n"), hint="two exits per character, plus one to end the run")
# %% [expect]
# not answered yet: set `answer` in the cell above, run it, then run this cell again

# %% [markdown]
# Reveal: run the modified guest and count.

# %% check
print("IO exits for 'KVM!\\n':", io_exits_for("KVM!\n"))
# %% [expect]
# IO exits for 'KVM!\n': 11

# %% [markdown]
# **2.** Which backend would `kvmlab.open("auto")` pick on a laptop without `/dev/kvm`?
# (Answer `"sim"` or `"hw"`.) The reveal shows what it picks *here* and why.

# %%
answer = None   # "sim" or "hw"

# %% check
check(answer, "sim", hint="auto falls back when /dev/kvm cannot be used")
# %% [expect]
# not answered yet: set `answer` in the cell above, run it, then run this cell again

# %%
from kvmlab.hw import unusable_reason
why = unusable_reason()
print("here, auto picks:", kvmlab.open("auto").backend_name)
print("/dev/kvm:", "usable" if why is None else why)

# %% [markdown]
# You are ready. Next: **lesson 01**, `/dev/kvm` and `struct kvm`.
