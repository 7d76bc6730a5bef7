"""Index layout of the core's state arrays (plain ints, baked into the compiled code).

`st` (int64, STATE_SIZE) is the whole vCPU: registers, segment caches, control and
debug registers, MSRs, events, exit data, the decoded instruction, counters, the CPUID
table and the software TLB.  `pm` (int64, PM_SIZE) is the VM's physical map: memslots
and coalesced-MMIO zones.  All 64-bit values are stored as int64 (two's complement).
"""

# general registers in x86 encoding order
RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI = range(8)
R8, R9, R10, R11, R12, R13, R14, R15 = range(8, 16)
RIP = 16
RFLAGS = 17

# segment registers in encoding order, then LDTR and TR; 4 fields each
ES, CS, SS, DS, FS, GS, LDTR, TR = range(8)
SEG = 20                      # SEG + 4*i + (SEL, BASE, LIMIT, ATTR)
SEL, BASE, LIMIT, ATTR = range(4)
GDTR_BASE, GDTR_LIMIT, IDTR_BASE, IDTR_LIMIT = 52, 53, 54, 55
CR0, CR2, CR3, CR4, CR8, EFER = 56, 57, 58, 59, 60, 61
DR0 = 62                      # DR0..DR3 = 62..65
DR6, DR7 = 66, 67
# MSRs kept in the state
M_STAR, M_LSTAR, M_CSTAR, M_SFMASK, M_KGSBASE = 68, 69, 70, 71, 72
M_SYSENTER_CS, M_SYSENTER_ESP, M_SYSENTER_EIP = 73, 74, 75
M_PAT, M_TSC, M_APIC_BASE, M_MISC_ENABLE, M_TSC_AUX = 76, 77, 78, 79, 80
M_TSC_ADJUST, M_SPEC_CTRL, M_MTRR_DEF, M_DEBUGCTL = 81, 82, 83, 84
# paging features from the CPUID table (Core._load_cpuid): reserved-bit checks of the walk
MAXPHYADDR = 86               # physical-address width: CPUID 0x80000008 EAX[7:0], 36 without that leaf
GBPAGES = 87                  # 1: 1 GiB pages (CPUID 0x80000001 EDX[26]); else PS in a PDPTE is reserved

# attribute bits of the segment caches (VMX access-rights format)
A_TYPE = 0xF
A_S = 1 << 4
A_DPL_SHIFT = 5
A_P = 1 << 7
A_AVL = 1 << 12
A_L = 1 << 13
A_DB = 1 << 14
A_G = 1 << 15
A_UNUSABLE = 1 << 16

# derived / run-time state
CPL = 90
VCPU_ID = 91
X87_NOP = 92                  # 1: x87 escapes only check their memory operand (sst286 runs)
PEND_IRQ = 100                # KVM_INTERRUPT: vector injected at the next entry regardless of IF, -1 none
PEND_NMI = 101                # 1: NMI queued
NMI_BLOCKED = 102             # 1 between NMI delivery and IRET
SHADOW = 103                  # 1: STI / MOV SS shadow on the next instruction
HALTED = 104                  # 1: the vCPU executed HLT and waits for an interrupt
REQ_IRQ_WIN = 105             # 1: exit with IRQ_WINDOW when interruptible
IRQ_LINE = 106                # in-kernel irqchip: vector waiting for IF=1 (taken like INTR), -1 none
IRQ_ACKED = 107               # last vector taken from IRQ_LINE, -1 none
PM_GEN_SEEN = 108             # physmap generation the TLB was filled under
PEND_EXC = 109                # exception to inject at next entry (INJECT_BP / KVM_SET_VCPU_EVENTS), -1

# exit data
EXIT_REASON = 110
IO_DIR, IO_SIZE, IO_PORT, IO_COUNT = 111, 112, 113, 114
MMIO_GPA, MMIO_LEN, MMIO_WRITE = 115, 116, 117
DBG_EXC, DBG_PC, DBG_DR6, DBG_DR7 = 118, 119, 120, 121
INT_SUBERR, INT_LEN = 122, 123
INT_BYTES = 124               # 15 instruction bytes, one per slot (124..138)
EXIT_VENDOR = 139             # hardware exit code of the flavour (VMX basic exit reason)
EXIT_DATA = 140               # 1024 data bytes, one per slot (IO data, MMIO data)
EXIT_DATA_N = 1024

# completion of a pending IN / MMIO read
COMP_KIND = 1170              # 0 none, 1 IN, 2 MMIO read
COMP_N = 1171                 # number of bytes supplied
COMP_GPA = 1172               # MMIO gpa / IO port of the pending access
COMP_DATA = 1180              # 1024 bytes (1180..2203)

# per-instruction scratch
ABORT = 2210                  # nonzero: the current instruction stops (exception or exit)
EXC_VEC = 2211                # pending exception vector raised by the instruction, -1 none
EXC_ERR = 2212                # its error code, -1 none
EXC_CR2 = 2213
EXIT_PENDING = 2214           # exit code to return after this instruction, 0 none
INSN_RIP = 2215               # rip of the instruction being executed
INSN_LIN = 2216               # its linear address
EXC_DEPTH = 2217              # nesting while delivering (for #DF / triple fault)
MMIO_WR_PENDING = 2218        # an MMIO write exit is already recorded in this instruction
TF_PENDING = 2219             # single-step trap after this instruction
WATCH_HIT = 2220              # data breakpoint bits hit by this instruction (DR6 B0..B3)
BUDGET_LEFT = 2221
RF_NEXT = 2222

# guest debug (KVM_SET_GUEST_DEBUG)
GDBG_CTRL = 2230
GDBG_DR = 2231                # 8 slots
DBG_SKIP_HWBP = 2239          # 1: do not check exec breakpoints for the next instruction

# decoded instruction (D + field)
D = 2240
D_KIND, D_SUB, D_LEN, D_OSZ, D_ASZ, D_SEG, D_MOD, D_REG, D_RM = range(9)
D_BASE, D_INDEX, D_SCALE, D_DISP, D_IMM, D_IMM2, D_REP, D_LOCK, D_REX = range(9, 18)
D_OPC, D_MAP, D_FLAGS, D_SEGOVR, D_PFX66 = range(18, 23)
D_SIZE = 24
IB = 2270                     # instruction bytes, one per slot (2270..2285)
IB_N = 2286                   # number of bytes fetched into IB

# counters (STAT + index)
STAT = 2300
ST_INSNS, ST_EXITS, ST_PF, ST_TLB_FLUSH, ST_INVLPG, ST_TLB_MISS, ST_EXC, ST_IRQ = range(8)
ST_IO, ST_MMIO, ST_HLT, ST_COALESCED, ST_WALKS, ST_DF, ST_TRIPLE, ST_NMI = range(8, 16)
ST_TLB_HIT = 16
# what flushed the TLB (ST_TLB_FLUSH counts them all; INVLPG is ST_INVLPG)
ST_FLUSH_CR3, ST_FLUSH_CR0, ST_FLUSH_CR4, ST_FLUSH_EFER, ST_FLUSH_SLOTS = range(17, 22)
STAT_N = 22
STAT_NAMES = ('instructions', 'exits', 'pf_taken', 'tlb_flush', 'invlpg', 'tlb_miss',
              'exceptions', 'interrupts', 'io', 'mmio', 'hlt', 'coalesced', 'page_walks',
              'double_faults', 'triple_faults', 'nmis', 'tlb_hit',
              'tlb_flush_cr3', 'tlb_flush_cr0', 'tlb_flush_cr4', 'tlb_flush_efer',
              'tlb_flush_memslots')
# the last thing that flushed the TLB (or a page of it): the ST_FLUSH_* / ST_INVLPG index, 0 never
TLB_LAST_FLUSH = 99
TLB_LAST_FLUSH_RIP = 89       # rip of the instruction that did it (-1 for a memslot change)

# CPUID table: CPUID_N entries, 8 fields: function, index, flags, eax, ebx, ecx, edx, used
CPUID_COUNT = 2324
CPUID = 2330
CPUID_MAX = 256

# software TLB: TLB_N entries of 4: tag (lin page | 1), physical page, host page addr or -1, flags
TLB = 4400
TLB_N = 256
TLBF_W = 1        # writable at all levels
TLBF_U = 2        # user at all levels
TLBF_NX = 4       # not executable
TLBF_D = 8        # dirty already set (or no paging): a write needs no walk
TLBF_G = 16       # global
TLBF_HOSTW = 32   # host page is plain writable RAM without dirty logging
TLBF_XS = 64      # instruction fetch allowed at CPL 0-2 (computed at fill)
TLBF_XU = 128     # instruction fetch allowed at CPL 3

SAVE = TLB + 4 * TLB_N        # snapshot of GPRs+RIP+RFLAGS taken before each instruction (18)
# decoded-instruction cache: IC_N entries of IC_STRIDE: host address of the first byte,
# decode mode, the instruction bytes as two little-endian words (masked to the length),
# then the D_SIZE decoded fields.  A hit is validated against the bytes now in memory, so
# self-modifying code, DMA and userspace writes between runs need no invalidation.
IC = SAVE + 32
IC_N = 4096
IC_STRIDE = 32
IC_HOST, IC_MODE, IC_W0, IC_W1 = 0, 1, 2, 3
IC_D = 4
# ---- fast path (kvmlab.cpu.fastexec): translated basic blocks in front of step_loop ----
FAST_OFF = IC + IC_N * IC_STRIDE    # 1: the fast path is off (Core.fast = False); 0 (reset) on
FAST_XLATE = FAST_OFF + 1           # blocks translated (diagnostics, not architectural)
FAST_SLOW = FAST_OFF + 2            # hand-overs of one instruction to the slow path
FAST_INSNS = FAST_OFF + 3           # instructions retired by the fast path
# per fast_run: the data segments as the fast path checks them, 3 slots each (ES..GS):
# base (0 for ES/CS/SS/DS in 64-bit mode), read limit, write limit; -1 = take the slow path
FSEG = FAST_OFF + 4
# block cache: BC_N direct-mapped blocks of BC_STRIDE slots, keyed by the host address of the
# first byte, the mode (MODE64 | CS.D<<1 | PROT<<2 | CPL<<3) and the offset in the guest page;
# a hit is validated against the guest bytes now in memory (BK_W words), like the IC.
BC = FAST_OFF + 24
BC_N = 512
BK_HOST, BK_MODE, BK_PGOFF, BK_LEN, BK_N = 0, 1, 2, 3, 4
BK_W = 8                            # 8 words: the block's bytes (at most BK_MAXLEN)
BK_MAXLEN = 64
BK_U = 16                           # micro-ops, one per instruction, UOP_W slots each
BK_MAXI = 16
UOP_W = 16
U_K, U_OP, U_SZ, U_R, U_RM, U_BASE, U_IDX, U_SC, U_DISP, U_IMM, U_SEG, U_ASZ, U_LEN, U_SSZ = range(14)
U_FUSE = 14                         # 1: the next micro-op is a Jcc run without its own dispatch
BC_STRIDE = BK_U + BK_MAXI * UOP_W
STATE_SIZE = BC + BC_N * BC_STRIDE

# ---- physical map (pm) ----
PM_NSLOTS = 0
PM_GEN = 1
PM_RING = 2                   # host address of the coalesced ring page, 0 none
PM_NZONES = 3
PM_SMP = 4                    # 1: vCPUs of this VM may run concurrently (locked instructions exit)
PM_ZONES = 8                  # PM_MAXZONES entries of 3: addr, size, pio
PM_MAXZONES = 64
PM_SLOTS = PM_ZONES + 3 * PM_MAXZONES
PM_SLOT_FIELDS = 8            # gpa, size, host, flags, dirty_addr, dirty_words, slot_id, used
PS_GPA, PS_SIZE, PS_HOST, PS_FLAGS, PS_DIRTY, PS_DWORDS, PS_ID, PS_USED = range(8)
PM_MAXSLOTS = 512
PM_SIZE = PM_SLOTS + PM_SLOT_FIELDS * PM_MAXSLOTS
SLOT_READONLY = 2             # KVM_MEM_READONLY

# exit codes (equal to KVM_EXIT_* where one exists)
EXIT_NONE = 0
EXIT_IO = 2
EXIT_DEBUG = 4
EXIT_HLT = 5
EXIT_MMIO = 6
EXIT_IRQ_WINDOW = 7
EXIT_SHUTDOWN = 8
EXIT_INTERNAL_ERROR = 17
EXIT_BUDGET = 100             # not a KVM exit: the budget is used up, re-enter after checking signals
EXIT_LOCKED = 101             # not a KVM exit: a locked instruction (PM_SMP set, LOCK_OK clear), nothing executed

# RFLAGS bits
F_CF, F_PF, F_AF, F_ZF, F_SF, F_TF, F_IF, F_DF, F_OF = 1, 4, 16, 64, 128, 256, 512, 1024, 2048
F_IOPL = 3 << 12
F_NT = 1 << 14
F_RF = 1 << 16
F_VM = 1 << 17
F_AC = 1 << 18
F_ID = 1 << 21
F_STATUS = F_CF | F_PF | F_AF | F_ZF | F_SF | F_OF

# exception vectors
DE, DB, NMI, BP, OF, BR, UD, NM, DF, TS, NP, SS_, GP, PF, MF, AC = 0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 16, 17

# queued MMIO writes (a second MMIO write within one instruction), exits on next entries
MQ_N = 4380
MQ = 4381                     # 4 entries of 3: gpa, len, value
MODE64 = 93                   # 1: 64-bit mode (EFER.LMA and CS.L)
PROT = 94                     # 1: CR0.PE
NEXT_RIP = 95                 # rip after the current instruction (branches overwrite it)
SHADOW_NEW = 96               # set by STI / MOV SS / POP SS for the next boundary
SOFT_INT = 97                 # (unused)
LOCK_OK = 98                  # 1: the next LOCKed/XCHG-memory instruction may run although PM_SMP (consumed)
