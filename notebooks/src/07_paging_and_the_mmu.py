# %% [markdown]
# # Lesson 07 — Paging and the MMU
#
# **You will** run guests in protected and long mode, walk page tables built by the VMM and
# page tables built by the guest itself, translate addresses with `KVM_TRANSLATE`, watch the
# CPU set Accessed/Dirty bits, take a page fault in the guest, see why `invlpg` exists, and
# watch the simulated CPU's TLB hit, miss and flush.
#
# **You will learn** the two stages of address translation in a VM (guest-virtual →
# guest-physical by the guest's page tables, guest-physical → host by KVM's MMU and the
# memslots), the 4-level page-table format, what KVM's MMU code does
# (`arch/x86/kvm/mmu/`), and the TLB.
#
# **You need** lessons 02 (memslots) and 04 (exits). Some x86: a page table entry is a
# 64-bit word holding a physical address and flag bits (P, R/W, U/S, A, D, PS, NX).

# %% [markdown]
# ## 1. Two stages
#
# ```
#  guest-virtual ──(guest page tables, CR3)──► guest-physical ──(memslots + KVM's MMU)──► host-physical
#        VA                  stage 1                 GPA                stage 2
# ```
#
# * **Stage 1** belongs to the guest: its kernel builds page tables and loads CR3. The CPU
#   walks them in hardware. KVM only needs to walk them itself when it emulates an
#   instruction or answers `KVM_TRANSLATE` (`arch/x86/kvm/mmu/paging_tmpl.h`,
#   `FNAME(walk_addr_generic)`).
# * **Stage 2** belongs to KVM: GPA → memslot → host virtual address (lesson 02) → host
#   physical page. With hardware support (Intel **EPT**, AMD **NPT**, "TDP" in KVM's code)
#   the CPU walks a second set of tables KVM builds lazily: the first guest access to a GPA
#   faults into KVM (`kvm_tdp_page_fault` → `kvm_mmu_page_fault`), which maps the page. A
#   GPA with no memslot gets a special "MMIO" entry, and accesses there become MMIO exits.
#   Without TDP, KVM uses **shadow paging**: it combines both stages into tables the CPU
#   uses directly, write-protecting the guest's tables to notice changes.
#
# ## 2. No paging: protected mode
#
# In 32-bit protected mode without paging (CR0.PG = 0), a linear address *is* a physical
# address. `KVM_TRANSLATE` (`kvm_arch_vcpu_ioctl_translate`) says so.

# %%
import kvmlab
from kvmlab import asm
from kvmlab.vmm import Machine, modes, pagewalk
from kvmlab.exercise import check

with Machine(mode="protected") as m:
    s = m.vcpu.get_sregs()
    print(f"cr0={s.cr0:#x} (PE={s.cr0 & 1}, PG={s.cr0 >> 31})")
    for va in (0x1000, 0x12345678):
        print(m.vcpu.translate(va))

# %% [markdown]
# ## 3. Page tables built by the VMM: long mode
#
# 64-bit long mode requires paging. To start a vCPU directly in long mode, the VMM writes
# page tables into guest RAM and sets CR3, CR4.PAE, EFER.LME/LMA and CR0.PG with
# `KVM_SET_SREGS` (`kvmlab.vmm.modes`). `Machine(mode="long", gib=1)` identity-maps the first
# GiB with 2 MiB pages: PML4 at 0x10000 → one PDPT → one page directory whose 512 entries
# have the PS ("page size") bit set.
#
# A 48-bit virtual address is split into four 9-bit table indices and a 12-bit offset;
# with a 2 MiB page the walk stops at the PDE and the offset is 21 bits.

# %%
with Machine(mode="long", gib=1) as m:
    print(pagewalk.walk_vcpu(m.vcpu, 0x101234))

# %% check
with Machine(mode="long", gib=1) as m:
    s = m.vcpu.get_sregs()
    print(f"cr0={s.cr0:#x} cr3={s.cr3:#x} cr4={s.cr4:#x} efer={s.efer:#x}")
    w = pagewalk.walk_vcpu(m.vcpu, 0x101234)
    print("indices:", " ".join(f"{name}={v:#x}" for name, hi, lo, v in w.split))
    print("entries:", [f"{lv.name} {lv.raw:#x}" for lv in w.levels])
    print(f"-> GPA {w.gpa:#x} in a {w.page_size >> 20} MiB page; stage 2: {w.second_stage}")
    print(m.vcpu.translate(0x101234))
    print(m.vcpu.translate(0x40000000))
# %% [expect]
# cr0=0x80000011 cr3=0x10000 cr4=0x20 efer=0x500
# indices: PML4=0x0 PDPT=0x0 PD=0x0 offset=0x101234
# entries: ['PML4E 0x11003', 'PDPTE 0x12003', 'PDE 0x83']
# -> GPA 0x101234 in a 2 MiB page; stage 2: slot 0 + 0x101234
# Translation(0x101234 -> 0x101234)
# Translation(0x40000000 -> not mapped)

# %% [markdown]
# `kvmlab.vmm.pagewalk` is a plain-Python page walker (the same algorithm as the CPU and
# `paging_tmpl.h`); its last line is stage 2, shown as *slot + offset* instead of a host
# address. Note `KVM_TRANSLATE` has no error for an unmapped address: it answers
# `valid = 0`.
#
# ## 4. Page tables built by the guest
#
# Now the guest builds its own 4-level tables (at 0x100000), maps two 4 KiB pages and
# switches CR3 to them:
#
# | VA | → PA | PTE flags |
# |---|---|---|
# | 0x0–0x1FFFFF | 0x0 (2 MiB, identity: code, stack, tables) | P R/W PS |
# | 0x400000 | 0x110000 (page A) | P R/W |
# | 0x401000 | 0x111000 (page B) | P (read-only) |
# | 0x402000 | — | not present |
#
# Then it **writes** page A, **reads** page B, reports on port 0x600, and writes to
# 0x402000 — a page fault. Its `#PF` handler (vector 14, through the IDT the guest loads
# with `lidt`) reports CR2 (the faulting address) and the error code the CPU pushed.

# %%
GUEST_PAGING = r"""
.code64
.equ PML4, 0x100000
.equ PDPT, 0x101000
.equ PD,   0x102000
.equ PT,   0x103000
.equ PAGE_A, 0x110000
.equ PAGE_B, 0x111000
.equ REPORT, 0x600
_start:
    mov rdi, PML4                       # zero the four table pages
    xor eax, eax
    mov ecx, 4 * 512
    rep stosq
    mov qword ptr [PML4], PDPT + 3      # present | writable
    mov qword ptr [PDPT], PD + 3
    mov qword ptr [PD], 0x83            # 0-2 MiB: 2 MiB page, identity
    mov qword ptr [PD + 16], PT + 3     # 4-6 MiB: a page table of 4 KiB pages
    mov qword ptr [PT], PAGE_A + 3      # VA 0x400000 -> page A, writable
    mov qword ptr [PT + 8], PAGE_B + 1  # VA 0x401000 -> page B, read-only
    mov rax, PML4
    mov cr3, rax                        # switch to our own tables
    lidt [idtr]
    mov rax, 0x1122334455667788
    mov qword ptr [0x400000], rax       # write page A
    mov rcx, qword ptr [0x401000]       # read page B
    mov dx, REPORT
    mov eax, 1
    out dx, eax                         # "tables are live"
    mov qword ptr [0x402000], rax       # not present: #PF
    hlt
pf_handler:
    pop rbx                             # the error code
    mov rax, cr2                        # the faulting address
    mov dx, REPORT
    out dx, eax
    mov eax, ebx
    out dx, eax
    hlt
.balign 16
idt:
    .fill 14 * 16, 1, 0                 # vectors 0-13: not present
    .word pf_handler & 0xffff           # vector 14: 64-bit interrupt gate
    .word 0x18                          # code selector (the Machine's 64-bit code segment)
    .byte 0, 0x8e                       # IST 0; present, DPL 0, type 0xE
    .word (pf_handler >> 16) & 0xffff
    .long 0, 0
idtr:
    .word 15 * 16 - 1
    .quad idt
"""

def run_paging_guest():
    m = Machine(mode="long", gib=1)
    m.load(asm.assemble(GUEST_PAGING, base=0x1000))
    return m, m.run()

m, result = run_paging_guest()
reports = [int.from_bytes(bytes.fromhex(e["data"]), "little") for e in result.exits if e.get("port") == 0x600]

# %% check
print(result.summary())
print(f"reports: tables live={reports[0]}, CR2={reports[1]:#x}, error code={reports[2]:#x}")
# %% [expect]
# stopped: hlt; exits: IO 3, HLT 1; rip=0x10a5
# reports: tables live=1, CR2=0x402000, error code=0x2

# %% [markdown]
# The page-fault error code is a bit field: bit 0 P (0 = the page was not present), bit 1
# W/R (1 = a write), bit 2 U/S (1 = user mode), bit 4 I/D (instruction fetch). 0x2: a
# supervisor write to a not-present page. A guest kernel's page-fault handler decides from
# CR2 and this code what to do (allocate, swap in, copy-on-write, or SIGSEGV). KVM was not
# involved: the fault went straight through the guest's IDT.
#
# ### Translations and the Accessed / Dirty bits
#
# When the CPU uses an entry it sets its **A** (accessed, bit 5) bit; when it writes a page
# it sets the **D** (dirty, bit 6) bit of the last-level entry. The guest's OS uses them for
# page replacement and for writing back dirty pages. Page A was written, page B only read:

# %% check
pt = m.memory.view("<u8", 0x103000, 3)
for i, va in enumerate((0x400000, 0x401000, 0x402000)):
    e = int(pt[i])
    print(f"VA {va:#x}: PTE {e:#06x} A={e >> 5 & 1} D={e >> 6 & 1} | KVM_TRANSLATE: {m.vcpu.translate(va)}")
# %% [expect]
# VA 0x400000: PTE 0x110063 A=1 D=1 | KVM_TRANSLATE: Translation(0x400000 -> 0x110000)
# VA 0x401000: PTE 0x111021 A=1 D=0 | KVM_TRANSLATE: Translation(0x401000 -> 0x111000)
# VA 0x402000: PTE 0x0000 A=0 D=0 | KVM_TRANSLATE: Translation(0x402000 -> not mapped)

# %% [markdown]
# The walk of VA 0x400000 through the guest's own tables (CR3 = 0x100000 now):

# %%
print(pagewalk.walk_vcpu(m.vcpu, 0x400000, access="write"))

# %% [markdown]
# The page-walk widget shows the same walk with the address split into its index fields,
# each level's entry and flags, and the second stage into the memslot:

# %%
from kvmlab.widgets import PageWalk
PageWalk(m, va=0x400000, access="write")

# %%
m.close()

# %% [markdown]
# ## 5. The TLB and `invlpg`
#
# Walking four tables for every access would be slow, so the CPU caches translations in
# the **TLB**. When the guest changes a page-table entry, the old translation may still be
# cached: the guest must flush it with `invlpg addr` (one page) or by reloading CR3 (all
# non-global pages). KVM also flushes TLBs when *it* changes stage-2 mappings
# (`kvm_flush_remote_tlbs`, counted in the VM stat `remote_tlb_flush`) and intercepts
# `invlpg` only when it uses shadow paging (`kvm_mmu_invlpg`).
#
# The guest maps VA 0x400000 to page A, reads it (the translation is now cached), points
# the PTE at page B, reads again, then `invlpg`s and reads a third time.

# %%
TLB = r"""
.code64
.equ PML4, 0x100000
.equ PDPT, 0x101000
.equ PD,   0x102000
.equ PT,   0x103000
_start:
    mov rdi, PML4
    xor eax, eax
    mov ecx, 4 * 512
    rep stosq
    mov qword ptr [PML4], PDPT + 3
    mov qword ptr [PDPT], PD + 3
    mov qword ptr [PD], 0x83
    mov qword ptr [PD + 16], PT + 3
    mov dword ptr [0x110000], 0xAAAA    # page A (through the identity map)
    mov dword ptr [0x111000], 0xBBBB    # page B
    mov qword ptr [PT], 0x110000 + 3    # VA 0x400000 -> page A
    mov rax, PML4
    mov cr3, rax
    mov dx, 0x600
    mov eax, dword ptr [0x400000]
    out dx, eax                         # 1st read: page A
    mov qword ptr [PT], 0x111000 + 3    # remap VA 0x400000 -> page B, no flush
    mov eax, dword ptr [0x400000]
    out dx, eax                         # 2nd read: A (stale TLB entry) or B
    invlpg [0x400000]
    mov eax, dword ptr [0x400000]
    out dx, eax                         # 3rd read: B, guaranteed
    hlt
"""
with Machine(mode="long", gib=1) as m:
    m.load(asm.assemble(TLB, base=0x1000))
    reads = [hex(int.from_bytes(bytes.fromhex(e["data"]), "little")) for e in m.run().exits if e.get("port") == 0x600]
print("second read (architecturally either value):", reads[1])

# %% check
print("first read:", reads[0], "| after invlpg:", reads[2])
# %% [expect]
# first read: 0xaaaa | after invlpg: 0xbbbb

# %% [markdown]
# The second read may see A or B: the architecture allows either, and whether a stale entry
# survives depends on the CPU (and, under shadow paging, on KVM, which write-protects guest
# page tables and may resync at once). Correct guests never depend on it.
#
# ## 6. Inside a TLB (simulator only)
#
# On a real CPU the TLB is invisible: no instruction lists it, not even KVM can read it;
# you only see its effects, and the ways to flush it. The simulated CPU has a small one you
# can look into: `vm.kernel.vcpu_tlb(0)` (sim only), and the TLB panel of the page-walk
# widget. It has **256 entries**, each caching one 4 KiB page (linear page → guest-physical
# page, with the walk's W/U/X permissions and the D and G bits), **direct-mapped**: the
# entry of an address is its bits 19:12, `(va >> 12) & 0xFF`, so each page has exactly
# one place it can go. (Real TLBs are set-associative, a few "ways" per set, often with
# separate ones for large pages, and two levels.)
#
# Do not confuse it with KVM's MMU. `vcpu->arch.mmu` (`arch/x86/kvm/mmu/`) builds *page
# tables* for stage 2: EPT/NPT tables, or shadow tables. The CPU then caches translations
# in its TLB from them as it does from the guest's own; on Intel, entries are tagged with
# the guest's VPID (AMD: ASID), so a VM exit does not have to flush the TLB.
#
# The guest below runs in five phases, each ending with `hlt` (the next `tm.run()` resumes
# after it). It reads four data pages 0x204000–0x207000 (entries 4–7) in a loop; its code
# is on page 0x1000 (entry 1).

# %%
TLB_LOOP = r"""
.code64
.equ PD, 0x12000                        # the Machine's page directory (2 MiB pages)
_start:
    mov ecx, 100                        # phase 1: 100 rounds over four data pages
1:  mov eax, [0x204000]
    add eax, [0x205000]
    add eax, [0x206000]
    add eax, [0x207000]
    loop 1b
    hlt
    mov rax, cr3                        # phase 2: reload CR3, then one more round
    mov cr3, rax
    mov eax, [0x204000]
    add eax, [0x205000]
    add eax, [0x206000]
    add eax, [0x207000]
    hlt
    invlpg [0x205000]                   # phase 3: drop one page
    hlt
    mov ecx, 100                        # phase 4: two pages 1 MiB apart, 100 rounds
2:  mov eax, [0x204000]
    add eax, [0x304000]
    loop 2b
    hlt
    or qword ptr [PD], 0x100            # phase 5: make 0-2 MiB (the code) global ...
    mov rax, cr4
    or rax, 0x80                        # ... turn on CR4.PGE (a paging bit of CR4: a flush)
    mov cr4, rax
    mov eax, [0x204000]
    mov rax, cr3                        # ... and reload CR3
    mov cr3, rax
    hlt
"""
from kvmlab.widgets import PageWalk
tm = Machine(mode="long", gib=1, memory=4 << 20, kvm=kvmlab.open("sim"))
tm.load(asm.assemble(TLB_LOOP, base=0x1000))
misses = 0

def phase():
    """Run to the next hlt; return the TLB and how many misses this phase added."""
    global misses
    tm.run()
    t = tm.vm.kernel.vcpu_tlb(0)
    new, misses = t.misses - misses, t.misses
    return t, new

def cached(t):
    return ", ".join(f"{e.linear:#x}@{e.index}{'(G)' if e.global_ else ''}" for e in t.entries)

def panel(va, line):
    """One line of the page-walk widget's TLB panel for ``va`` (1: ``va`` hit or miss,
    2: the counters, 3: the flushes by cause, 4: the last flush)."""
    return PageWalk(tm, va=va, show_map=False).tlb_lines()[line].strip()

# %% [markdown]
# **Predict** before you run the next cell: phase 1 makes 100 rounds of four reads (400
# data accesses, plus fetching about 500 instructions). How many TLB **misses**? (A miss is a
# lookup that finds nothing, so the CPU walks the page tables and fills the entry.)

# %% check
t, new = phase()
print(f"phase 1: {new} misses and {'hundreds of' if t.hits >= 396 else 'only'} hits (see the widget below)")
print("cached (page@entry):", cached(t))
print(panel(0x205000, 3))
# %% [expect]
# phase 1: 5 misses and hundreds of hits (see the widget below)
# cached (page@entry): 0x1000@1, 0x204000@4, 0x205000@5, 0x206000@6, 0x207000@7
# full flushes: 1 (memslot change 1); INVLPG (one page): 0

# %% [markdown]
# Five misses: the code page once, each data page once; every later access hits. Locality
# is why a few dozen entries make paging cheap. The one flush so far came before the first
# entry: the simulator flushes the TLB when the memslots changed since the vCPU last ran,
# since a cached translation may lead to memory that is no longer there (KVM flushes with
# `kvm_flush_remote_tlbs` when it drops stage-2 mappings, e.g. of a deleted or moved slot).
#
# The page-walk widget shows the same TLB under the walk: whether the address is cached
# now (which entry, the physical page, the W U X D G bits), the hit and miss counters, the
# flushes by cause and the last one. In the grid each square is an entry; the selected
# address's is framed (green: a hit).

# %%
PageWalk(tm, va=0x205000, show_map=False)

# %% [markdown]
# **Predict**: phase 2 reloads CR3 with the *same* value, then reads the four pages once.
# How many misses now?

# %% check
t, new = phase()
print(f"phase 2: {new} misses; last flush: {t.last_flush} at rip {t.last_flush_rip:#x}")
print("cached:", cached(t))
# %% [expect]
# phase 2: 5 misses; last flush: MOV to CR3 at rip 0x1027
# cached: 0x1000@1, 0x204000@4, 0x205000@5, 0x206000@6, 0x207000@7

# %% [markdown]
# Writing CR3 flushes every (non-global) translation, even when the value does not
# change: that is how an OS switches address spaces, and why it is costly (PCIDs exist to
# avoid it). The rip is the `mov cr3, rax`. Then all five pages missed again.
#
# Phase 3 is a lone `invlpg [0x205000]`: one page goes, the others stay.

# %% check
t, new = phase()
print(f"phase 3: {new} misses; last: {t.last_flush}; invlpg count {t.invlpg}")
print("cached:", cached(t))
print(panel(0x205000, 1))
# %% [expect]
# phase 3: 0 misses; last: INVLPG (one page); invlpg count 1
# cached: 0x1000@1, 0x204000@4, 0x206000@6, 0x207000@7
# 0x205000: MISS (entry 5 is empty): the next access walks the tables

# %% [markdown]
# **Predict**: phase 4 reads 0x204000 and 0x304000 in turn, 100 rounds. Both have bits
# 19:12 = 0x04. How many misses, roughly: 1, 2 or 200?

# %% check
t, new = phase()
print(f"phase 4: {new} misses")
print(panel(0x204000, 1))
# %% [expect]
# phase 4: 199 misses
# 0x204000: MISS: entry 4 holds page 0x304000 -> 0x304000 (same bits 19:12: the two evict each other)

# %% [markdown]
# A **conflict**: the two pages take turns in entry 4 and evict each other, so every read
# misses (only the first read of 0x204000, still cached from phase 2, hit). A 256-entry
# TLB with plenty of free entries, and a miss on every access: that is what
# set-associativity (several ways per entry) is for.
#
# Phase 5 marks the first 2 MiB (the code page) **global** (G, bit 8 of the PDE) and sets
# CR4.PGE. That CR4 write itself flushes everything (so the code page is refilled, now with
# G), then the guest reads 0x204000 and reloads CR3. Global pages survive a CR3 write:
# kernels map themselves global, since the kernel half is the same in every address
# space. (Toggling CR4.PGE or an INVLPG of that page drops a global entry; a CR3 write does not.)

# %% check
t, new = phase()
print(panel(0x1000, 3))
print("after the CR3 reload, cached:", cached(t))
tm.close()
# %% [expect]
# full flushes: 4 (MOV to CR3 2, CR4 paging bit change 1, memslot change 1); INVLPG (one page): 1
# after the CR3 reload, cached: 0x1000@1(G)

# %% [markdown]
# Only the code page is left, marked G. Flushes are not free either way: the TLB misses
# that follow each one cost page walks (here a handful; in a big guest thousands).
#
# *Differences you may meet:* the simulated CPU also implements 32-bit (2-level) and PAE
# paging; the `/dev/kvm` of this course's test machine (a software "PVM" KVM backend) only
# pages in long mode. Upstream KVM on Intel/AMD hardware supports all modes.
#
# ## Exercises
#
# **1.** In 4-level paging, which page-directory index (bits 29:21) does VA `0x40201234`
# use? (A number.)

# %%
answer = None   # a number

# %%
def pd_index(va):
    return next(v for name, hi, lo, v in pagewalk.split(va, "4-level") if name == "PD")

# %% check
check(answer, pd_index(0x40201234), hint="(va >> 21) & 0x1FF")
# %% [expect]
# not answered yet: set `answer` in the cell above, run it, then run this cell again

# %% check
for name, hi, lo, v in pagewalk.split(0x40201234, "4-level"):
    print(f"{name}[{hi}:{lo}] = {v:#x}")
# %% [expect]
# PML4[47:39] = 0x0
# PDPT[38:30] = 0x1
# PD[29:21] = 0x1
# PT[20:12] = 0x1
# offset[11:0] = 0x234

# %% [markdown]
# **2.** Page B's PTE has no R/W bit (read-only). What does `KVM_TRANSLATE` report in its
# `writeable` field for VA 0x401000? (`True` or `False`.)

# %%
answer = None   # True or False

# %%
m, _ = run_paging_guest()
writeable = m.vcpu.translate(0x401000).writeable
m.close()

# %% check
check(answer, writeable, hint="read kvm_arch_vcpu_ioctl_translate in arch/x86/kvm/x86.c")
# %% [expect]
# not answered yet: set `answer` in the cell above, run it, then run this cell again

# %% check
print("writeable:", writeable)
# %% [expect]
# writeable: True

# %% [markdown]
# (KVM hard-codes `writeable = 1` and `usermode = 0`: the fields predate the walker
# reporting permissions. Use a page walk if you need them.)
#
# **3.** The Machine starts long mode with CR0.WP = 0. What would the page-fault error code
# be if the guest, with CR0.WP = 1, wrote to the *read-only* page B instead of the
# not-present page? (A number.)

# %%
answer = None   # a number

# %%
WP_GUEST = GUEST_PAGING.replace("lidt [idtr]", "lidt [idtr]\n    mov rax, cr0\n    or rax, 0x10000\n    mov cr0, rax") \
                       .replace("mov qword ptr [0x402000], rax", "mov qword ptr [0x401000], rax")
def wp_error_code():
    with Machine(mode="long", gib=1) as m:
        m.load(asm.assemble(WP_GUEST, base=0x1000))
        r = [int.from_bytes(bytes.fromhex(e["data"]), "little") for e in m.run().exits if e.get("port") == 0x600]
        return r[2]

# %% check
check(answer, wp_error_code(), hint="bit 0 = the page was present, bit 1 = a write")
# %% [expect]
# not answered yet: set `answer` in the cell above, run it, then run this cell again

# %% check
print(f"error code: {wp_error_code():#x}")
# %% [expect]
# error code: 0x3

# %% [markdown]
# **4.** In the simulated TLB (256 entries, direct-mapped on bits 19:12), which of these
# pages would keep evicting page 0x204000 if a guest read both in a loop: 0x104000,
# 0x205000, 0x284000, 0x304000? (A list of addresses.)

# %%
answer = None   # a list, e.g. [0x205000]

# %%
CANDIDATES = (0x104000, 0x205000, 0x284000, 0x304000)

def loop_misses(page):
    """TLB misses of 100 rounds reading 0x204000 and ``page`` (simulator)."""
    src = f".code64\n_start: mov ecx, 100\n1: mov eax, [0x204000]\n add eax, [{page:#x}]\n loop 1b\n hlt\n"
    with Machine(mode="long", gib=1, memory=4 << 20, kvm=kvmlab.open("sim")) as m:
        m.load(asm.assemble(src, base=0x1000))
        m.run()
        return m.vm.kernel.vcpu_tlb(0).misses

conflict_misses = {page: loop_misses(page) for page in CANDIDATES}

# %% check
check(answer, {p for p, n in conflict_misses.items() if n > 100}, hint="compare (va >> 12) & 0xFF")
# %% [expect]
# not answered yet: set `answer` in the cell above, run it, then run this cell again

# %% check
for page, n in conflict_misses.items():
    print(f"0x204000 with {page:#x}: entries {0x204000 >> 12 & 0xFF:#x} and {page >> 12 & 0xFF:#x}, {n} misses")
# %% [expect]
# 0x204000 with 0x104000: entries 0x4 and 0x4, 201 misses
# 0x204000 with 0x205000: entries 0x4 and 0x5, 3 misses
# 0x204000 with 0x284000: entries 0x4 and 0x84, 3 misses
# 0x204000 with 0x304000: entries 0x4 and 0x4, 201 misses

# %% [markdown]
# (Each count includes one miss for the code page.) Pages whose addresses differ only above
# bit 19, i.e. by a multiple of 1 MiB, share an entry.

# %% [markdown]
# Next: **lesson 08**, debugging a guest.
