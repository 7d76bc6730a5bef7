# %% [markdown]
# # Lesson 07 — Paging and the MMU
#
# **You will** run guests in protected and long mode, walk page tables built by the VMM and
# page tables built by the guest itself, translate addresses with `KVM_TRANSLATE`, watch the
# CPU set Accessed/Dirty bits, take a page fault in the guest, and see why `invlpg` exists.
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
# Next: **lesson 08**, debugging a guest.
