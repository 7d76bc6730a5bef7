# %% [markdown]
# # Lesson 02 — Memory slots
#
# **You will** give a VM its memory: map host memory at guest-physical addresses with
# `KVM_SET_USER_MEMORY_REGION`, translate guest-physical addresses to host addresses, hit
# the rules KVM enforces (overlaps, alignment), make a read-only ROM, and track which pages
# a guest wrote with the dirty log.
#
# **You will learn** `struct kvm_userspace_memory_region` (the ioctl argument) and
# `struct kvm_memory_slot` (KVM's copy), the GPA → HVA formula, why writes to a ROM slot
# become MMIO exits, and how live migration finds dirty pages.
#
# **You need** lesson 01 (`kvmlab.open()`, `create_vm`, errno).

# %% [markdown]
# ## 1. Guest memory is host memory
#
# KVM does not allocate guest RAM. The VMM allocates ordinary memory in its own address
# space (`mmap`) and tells KVM: *"guest-physical addresses `guest_phys_addr` …
# `guest_phys_addr + memory_size - 1` are my host virtual addresses starting at
# `userspace_addr`"*. That is one **memory slot**:
#
# ```c
# struct kvm_userspace_memory_region {      /* include/uapi/linux/kvm.h */
#     __u32 slot;                           /* bits 0-15: slot id, 16-31: address space */
#     __u32 flags;                          /* KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY */
#     __u64 guest_phys_addr;
#     __u64 memory_size;                    /* bytes; 0 deletes the slot */
#     __u64 userspace_addr;                 /* start of the host memory */
# };
# ```
#
# `kvm_set_memory_region()` in `virt/kvm/kvm_main.c` checks it and keeps its own copy, a
# `struct kvm_memory_slot` (`include/linux/kvm_host.h`) with `base_gfn` (first guest
# *frame* number = GPA / 4096), `npages`, `userspace_addr`, `flags` and `dirty_bitmap`.
# Translating a guest-physical address to a host virtual address is then
# `__gfn_to_hva_memslot()`:
#
# ```
# hva = slot->userspace_addr + (gfn - slot->base_gfn) * PAGE_SIZE   (+ offset in the page)
# ```
#
# In kvmlab, `kvmlab.GuestMemory(size)` is such host memory (an anonymous `mmap`), seen as a
# numpy array; `mem.address` is its host address.

# %%
import errno
import kvmlab
from kvmlab import asm
from kvmlab.exercise import check

kvm = kvmlab.open()
vm = kvm.create_vm()
ram = kvmlab.GuestMemory(0x100000)                         # 1 MiB of host memory
vm.set_user_memory_region(slot=0, guest_phys_addr=0, memory=ram)
rom = kvmlab.GuestMemory(0x10000)                          # 64 KiB more
vm.set_user_memory_region(slot=1, guest_phys_addr=0xF0000000, memory=rom)
print(vm.slots[0])
print(vm.slots[1])

# %% [markdown]
# The translation, done by hand the way KVM does it. (Host addresses differ on every run,
# so we print offsets into the host buffers.)

# %%
def gpa_to_hva(vm, gpa):
    for s in vm.slots.values():
        if s.guest_phys_addr <= gpa < s.end:
            gfn, base_gfn = gpa >> 12, s.guest_phys_addr >> 12
            return s.userspace_addr + ((gfn - base_gfn) << 12) + (gpa & 0xFFF)
    return None                       # no slot: an access here becomes an MMIO exit

# %% check
for gpa in (0x1234, 0xFFFFF, 0xF0000010, 0x100000):
    hva = gpa_to_hva(vm, gpa)
    if hva is None:
        print(f"GPA {gpa:#x}: no slot -> MMIO")
    else:
        which = "ram" if ram.address <= hva < ram.address + ram.size else "rom"
        base = ram.address if which == "ram" else rom.address
        print(f"GPA {gpa:#x}: {which}.address + {hva - base:#x}")
# %% [expect]
# GPA 0x1234: ram.address + 0x1234
# GPA 0xfffff: ram.address + 0xfffff
# GPA 0xf0000010: rom.address + 0x10
# GPA 0x100000: no slot -> MMIO

# %% [markdown]
# On the simulated backend you can see KVM's own copy, the `struct kvm_memory_slot`s in
# `struct kvm`'s `memslots`:

# %%
print(vm.kernel.memslots)

# %% [markdown]
# The memslot map widget draws the guest-physical address space: slots, holes (where
# accesses become MMIO exits) and the VMM's MMIO devices.

# %%
from kvmlab.widgets import MemslotMap
MemslotMap(vm)

# %% [markdown]
# ## 2. The rules: alignment, overlap, what can change
#
# `kvm_set_memory_region()` refuses a request with `EINVAL` if the addresses or the size are
# not multiples of the page size (4096), and with `EEXIST` if the new slot overlaps another
# slot (`kvm_check_memslot_overlap`) — even by one page. An existing slot can be deleted
# (size 0), moved to another GPA, or have dirty logging switched on and off; it cannot be
# resized or change its host memory (delete it and create it again).
#
# Each experiment below starts from a fresh VM with one slot: slot 0 at GPA 0x10000, 64 KiB.

# %%
def attempt(**region):
    """Try one KVM_SET_USER_MEMORY_REGION on a fresh VM that has slot 0 at 0x10000-0x1ffff."""
    vm = kvmlab.open().create_vm()
    mem = kvmlab.GuestMemory(0x10000)
    vm.set_user_memory_region(slot=0, guest_phys_addr=0x10000, memory=mem)
    region.setdefault("memory", kvmlab.GuestMemory(0x10000))
    try:
        vm.set_user_memory_region(**region)
        return "ok"
    except kvmlab.KvmError as e:
        return errno.errorcode[e.errno]

# %% check
other = kvmlab.GuestMemory(0x10000)
print("slot 1 at 0x20000 (adjacent)        ", attempt(slot=1, guest_phys_addr=0x20000))
print("slot 1 at 0x1f000 (one page overlap)", attempt(slot=1, guest_phys_addr=0x1F000))
print("slot 1 at 0x20800 (not aligned)     ", attempt(slot=1, guest_phys_addr=0x20800))
print("slot 1, size 0x1800                 ", attempt(slot=1, guest_phys_addr=0x40000, memory_size=0x1800, userspace_addr=other.address))
print("slot 5 deleted (never existed)      ", attempt(slot=5, memory=None, memory_size=0, userspace_addr=0))
print("slot 32764 (= KVM_CAP_NR_MEMSLOTS)  ", attempt(slot=32764, guest_phys_addr=0x40000))
print("flags 0x4 (unknown)                 ", attempt(slot=1, guest_phys_addr=0x40000, flags=4))
# %% [expect]
# slot 1 at 0x20000 (adjacent)         ok
# slot 1 at 0x1f000 (one page overlap) EEXIST
# slot 1 at 0x20800 (not aligned)      EINVAL
# slot 1, size 0x1800                  EINVAL
# slot 5 deleted (never existed)       EINVAL
# slot 32764 (= KVM_CAP_NR_MEMSLOTS)   EINVAL
# flags 0x4 (unknown)                  EINVAL

# %% [markdown]
# Changing an existing slot: moving is fine, resizing is not.

# %% check
vm2 = kvmlab.open().create_vm()
mem2 = kvmlab.GuestMemory(0x10000)
vm2.set_user_memory_region(slot=0, guest_phys_addr=0x10000, memory=mem2)
for what, kw in [("move slot 0 to 0x80000", dict(guest_phys_addr=0x80000, memory=mem2)),
                 ("grow slot 0 to 128 KiB", dict(guest_phys_addr=0x80000, userspace_addr=mem2.address, memory_size=0x20000)),
                 ("delete slot 0         ", dict(memory_size=0, userspace_addr=0)),
                 ("delete slot 0 again   ", dict(memory_size=0, userspace_addr=0))]:
    try:
        vm2.set_user_memory_region(slot=0, **kw)
        print(what, "ok")
    except kvmlab.KvmError as e:
        print(what, errno.errorcode[e.errno])
# %% [expect]
# move slot 0 to 0x80000 ok
# grow slot 0 to 128 KiB EINVAL
# delete slot 0          ok
# delete slot 0 again    EINVAL

# %% [markdown]
# kvmlab's errors say *which* rule was broken:

# %%
try:
    vm.set_user_memory_region(slot=2, guest_phys_addr=0xFF000, memory=kvmlab.GuestMemory(0x2000))
except kvmlab.KvmError as e:
    print(e)

# %% [markdown]
# ## 3. Guest writes land in host memory
#
# From here on we let `kvmlab.vmm.Machine` (a tiny VMM) create the VM, its vCPU and **slot 0
# for its RAM at GPA 0** — the same `set_user_memory_region` call you just made — and run a
# real-mode guest. The guest stores a byte; the VMM sees it in its numpy array at once,
# because it *is* the same memory. No exit, no copy.

# %%
from kvmlab.vmm import Machine

STORE = """
.code16
_start:
    mov byte ptr [0x3000], 0x42
    hlt
"""
with Machine(mode="real", memory=0x100000) as m:
    m.load(asm.assemble(STORE, base=0x1000))
    before = int(m.memory[0x3000])
    result = m.run()
    after = int(m.memory[0x3000])

# %% check
print(f"host view of GPA 0x3000: before {before:#x}, after {after:#x}; exits: {result.exit_counts}")
# %% [expect]
# host view of GPA 0x3000: before 0x0, after 0x42; exits: {'HLT': 1}

# %% [markdown]
# ## 4. `KVM_MEM_READONLY`: a ROM
#
# A slot created with `KVM_MEM_READONLY` is served from memory for reads and instruction
# fetches, but a guest **write** cannot go to memory: KVM turns it into a
# `KVM_EXIT_MMIO` (`is_write=1`) so the VMM can emulate, say, a flash chip — and the memory
# stays unchanged. The flag is fixed for the life of the slot (adding or removing it on an
# existing slot is `EINVAL`).
#
# `Machine.add_rom(gpa, size, data)` makes such a slot. The guest below reads the ROM's first
# byte, writes to it, and reads it again.

# %%
ROMTEST = """
.code16
_start:
    mov ax, 0x8000          # real mode: segment 0x8000 -> GPA 0x80000
    mov ds, ax
    mov bl, [0]             # read:  served from the ROM, no exit
    mov byte ptr [0], 0x99  # write: KVM_EXIT_MMIO, memory unchanged
    mov cl, [0]             # read again
    hlt
"""
with Machine(mode="real", memory=0x80000) as m:
    m.add_rom(0x80000, 0x1000, b"\x5a")
    m.load(asm.assemble(ROMTEST, base=0x1000))
    result = m.run()
    rom_byte = m.read_phys(0x80000, 1)[0]

# %% check
for e in result.exits:
    print(e["reason"], *(f"{k}={v:#x}" if k == "phys_addr" else f"{k}={v}" for k, v in e.items() if k != "reason"))
print(f"bl={result.regs['rbx'] & 0xFF:#x} cl={result.regs['rcx'] & 0xFF:#x} ROM byte now {rom_byte:#x}")
# %% [expect]
# MMIO phys_addr=0x80000 len=1 is_write=True data=99
# HLT
# bl=0x5a cl=0x5a ROM byte now 0x5a

# %% [markdown]
# ## 5. The dirty log
#
# Live migration copies guest memory while the guest keeps running, then copies again only
# the pages written meanwhile. KVM tracks them: a slot with `KVM_MEM_LOG_DIRTY_PAGES` gets a
# `dirty_bitmap` (one bit per 4 KiB page, `mark_page_dirty_in_slot()`), and
# `KVM_GET_DIRTY_LOG` copies the bitmap to userspace **and clears it**
# (`kvm_get_dirty_log_protect`). Only writes by the *guest* are logged — the VMM writing
# through its own mapping is invisible to KVM. The flag can be switched on for an existing
# slot.
#
# The guest below writes to GPA 0x3000, 0x4010 and 0x64000, and pushes one word on its stack
# (SS:SP = 0:0x8000, so the push writes GPA 0x7FFE).

# %%
DIRTY = """
.code16
_start:
    mov byte ptr [0x3000], 1
    mov word ptr [0x4010], 2
    push ax
    mov ax, 0x6400
    mov ds, ax
    mov byte ptr [0], 3     # GPA 0x64000
    hlt
"""

def dirty_pages_after(source, host_writes=()):
    """Run `source` with dirty logging on slot 0; return (pages after the run, after a 2nd read)."""
    with Machine(mode="real", memory=0x100000) as m:
        m.load(asm.assemble(source, base=0x1000))
        m.vm.set_user_memory_region(slot=0, guest_phys_addr=0, memory=m.memory,
                                    flags=kvmlab.KVM_MEM_LOG_DIRTY_PAGES)
        for gpa in host_writes:
            m.memory[gpa] = 0xFF              # the VMM writes: not logged
        m.run()
        first = m.vm.get_dirty_log(0).pages
        second = m.vm.get_dirty_log(0).pages
        return first, second

# %% check
first, second = dirty_pages_after(DIRTY, host_writes=[0x50000])
print("dirty pages:", first)
print("read again: ", second)
# %% [expect]
# dirty pages: [3, 4, 7, 100]
# read again:  []

# %% [markdown]
# Page 0x50 (80), written by the VMM, is not in the log; page 7 is there because of the
# stack push. The code page (page 1) was only *read* and fetched.
#
# ## Exercises
#
# **1.** A VM has slot 0 at GPA 0x0–0xFFFFF. You add slot 1 at GPA 0xFF000 with 8 KiB.
# Which errno? (A name such as `"EINVAL"`.)

# %%
answer = None   # an errno name

# %%
def add_slot1_at_0xff000():
    vm = kvmlab.open().create_vm()
    vm.set_user_memory_region(0, 0, kvmlab.GuestMemory(0x100000))
    try:
        vm.set_user_memory_region(1, 0xFF000, kvmlab.GuestMemory(0x2000))
        return "no error"
    except kvmlab.KvmError as e:
        return errno.errorcode[e.errno]

# %% check
check(answer, add_slot1_at_0xff000(), hint="the new slot's first page is the old slot's last page")
# %% [expect]
# not answered yet: set `answer` in the cell above, run it, then run this cell again

# %% check
print("slot 1 at 0xff000:", add_slot1_at_0xff000())
# %% [expect]
# slot 1 at 0xff000: EEXIST

# %% [markdown]
# **2.** A slot starts at GPA 0x40000 and its host memory at `userspace_addr = U`. At what
# offset from `U` does GPA 0x42345 live? (A number.)

# %%
answer = None   # a number, e.g. 0x1000

# %%
vm3 = kvmlab.open().create_vm()
mem3 = kvmlab.GuestMemory(0x10000)
vm3.set_user_memory_region(slot=0, guest_phys_addr=0x40000, memory=mem3)
offset = gpa_to_hva(vm3, 0x42345) - mem3.address

# %% check
check(answer, offset, hint="hva = userspace_addr + (gpa - guest_phys_addr)")
# %% [expect]
# not answered yet: set `answer` in the cell above, run it, then run this cell again

# %% check
print(f"GPA 0x42345 is at userspace_addr + {offset:#x}")
# %% [expect]
# GPA 0x42345 is at userspace_addr + 0x2345

# %% [markdown]
# **3.** Which pages does the dirty log report for this guest? (A list of page numbers.)
#
# ```
# mov byte ptr [0x9000], 1
# mov dword ptr [0x9ffe], 0x11223344    # crosses into the next page
# mov byte ptr [0x9000], 2
# hlt
# ```

# %%
answer = None   # a list of page numbers

# %%
EX3 = """
.code16
_start:
    mov byte ptr [0x9000], 1
    mov dword ptr [0x9ffe], 0x11223344
    mov byte ptr [0x9000], 2
    hlt
"""
ex3_pages, _ = dirty_pages_after(EX3)

# %% check
check(answer, ex3_pages, hint="a 4-byte write at 0x9ffe touches two pages; writing a page twice sets one bit")
# %% [expect]
# not answered yet: set `answer` in the cell above, run it, then run this cell again

# %% check
print("dirty pages:", ex3_pages)
# %% [expect]
# dirty pages: [9, 10]

# %% [markdown]
# Next: **lesson 03**, the vCPU, its file descriptor and the `kvm_run` page.
