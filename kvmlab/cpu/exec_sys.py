"""Executors for system instructions: descriptor tables (LGDT LIDT SGDT SIDT LLDT SLDT
LTR STR), LMSW/SMSW/CLTS, INVLPG, MOV CRn/DRn, RDMSR/WRMSR, WBINVD/INVD, SWAPGS, RDTSCP,
LAR/LSL/VERR/VERW, CLAC/STAC."""
from .jit import njit, ix
from .layout import *  # noqa: F401,F403
from .alu import msk
from .access import get_reg, set_reg, ea, rd, wr, rm_read, rm_write, seg_lin
from .mmu import raise_exc, tlb_flush, tlb_flush_page
from .segments import (read_desc, desc_attr, desc_base, desc_limit, seg_set, update_mode,
                       desc_addr)
from .access import sys_read, sys_write
from .exec_alu import cpuid_bit


@njit
def need_cpl0(st):
    if st[PROT] != 0 and st[CPL] != 0:
        raise_exc(st, GP, 0)
        return False
    return True


@njit
def internal(st):
    st[EXIT_PENDING] = EXIT_INTERNAL_ERROR
    st[ABORT] = 1


@njit
def canonical(v):
    return ((v << 16) >> 16) == v


@njit
def msr_read(st, idx):
    """(ok, value) for the MSRs the core implements."""
    if idx == 0x10:
        return True, st[M_TSC] + st[ix(STAT + ST_INSNS)]
    if idx == 0x1B:
        return True, st[M_APIC_BASE]
    if idx == 0x174:
        return True, st[M_SYSENTER_CS]
    if idx == 0x175:
        return True, st[M_SYSENTER_ESP]
    if idx == 0x176:
        return True, st[M_SYSENTER_EIP]
    if idx == 0x277:
        return True, st[M_PAT]
    if idx == 0x1A0:
        return True, st[M_MISC_ENABLE]
    if idx == 0x3B:
        return True, st[M_TSC_ADJUST]
    if idx == 0x48:
        return True, st[M_SPEC_CTRL]
    if idx == 0x2FF:
        return True, st[M_MTRR_DEF]
    if idx == 0x1D9:
        return True, st[M_DEBUGCTL]
    if idx == 0xC0000080:
        return True, st[EFER]
    if idx == 0xC0000081:
        return True, st[M_STAR]
    if idx == 0xC0000082:
        return True, st[M_LSTAR]
    if idx == 0xC0000083:
        return True, st[M_CSTAR]
    if idx == 0xC0000084:
        return True, st[M_SFMASK]
    if idx == 0xC0000100:
        return True, st[ix(SEG + 4 * FS + BASE)]
    if idx == 0xC0000101:
        return True, st[ix(SEG + 4 * GS + BASE)]
    if idx == 0xC0000102:
        return True, st[M_KGSBASE]
    if idx == 0xC0000103:
        return True, st[M_TSC_AUX]
    return False, 0


@njit
def msr_write(st, idx, v, host):
    """Write an MSR; False for an unknown MSR or an invalid value (guest: #GP)."""
    if idx == 0x10:
        st[M_TSC] = v - st[ix(STAT + ST_INSNS)]
    elif idx == 0x1B:
        if (v & 0x400) != 0 and (v & 0x800) == 0:
            return False
        if (v & 0x400) != 0:
            return False          # no x2APIC in the guest CPUID
        st[M_APIC_BASE] = v
    elif idx == 0x174:
        st[M_SYSENTER_CS] = v & 0xFFFFFFFF
    elif idx == 0x175:
        st[M_SYSENTER_ESP] = v
    elif idx == 0x176:
        st[M_SYSENTER_EIP] = v
    elif idx == 0x277:
        for i in range(8):
            t = (v >> (8 * i)) & 0xFF
            if t == 2 or t == 3 or t > 7:
                return False
        st[M_PAT] = v
    elif idx == 0x1A0:
        st[M_MISC_ENABLE] = v
    elif idx == 0x3B:
        st[M_TSC_ADJUST] = v
    elif idx == 0x48:
        st[M_SPEC_CTRL] = v
    elif idx == 0x2FF:
        st[M_MTRR_DEF] = v
    elif idx == 0x1D9:
        st[M_DEBUGCTL] = v
    elif idx == 0xC0000080:
        if (v & ~0xD01) != 0:
            return False
        if not host and (st[CR0] & 0x80000000) != 0 and ((v ^ st[EFER]) & 0x100) != 0:
            return False
        st[EFER] = (v & ~0x400) | (st[EFER] & 0x400)
        update_mode(st)
        tlb_flush(st, False, ST_FLUSH_EFER)
    elif idx == 0xC0000081:
        st[M_STAR] = v
    elif idx == 0xC0000082 or idx == 0xC0000083 or idx == 0xC0000100 or idx == 0xC0000101 \
            or idx == 0xC0000102:
        if not canonical(v):
            return False
        if idx == 0xC0000082:
            st[M_LSTAR] = v
        elif idx == 0xC0000083:
            st[M_CSTAR] = v
        elif idx == 0xC0000100:
            st[ix(SEG + 4 * FS + BASE)] = v
        elif idx == 0xC0000101:
            st[ix(SEG + 4 * GS + BASE)] = v
        else:
            st[M_KGSBASE] = v
    elif idx == 0xC0000084:
        st[M_SFMASK] = v & 0xFFFFFFFF
    elif idx == 0xC0000103:
        st[M_TSC_AUX] = v & 0xFFFFFFFF
    else:
        return False
    return True


@njit
def write_cr0(st, v):
    old = st[CR0]
    v = (v & 0xFFFFFFFF) | 0x10
    if (v & 0x80000000) != 0 and (v & 1) == 0:
        raise_exc(st, GP, 0)
        return
    if (v & 0x20000000) != 0 and (v & 0x40000000) == 0:
        raise_exc(st, GP, 0)
        return
    if (v & 0x80000000) != 0 and (old & 0x80000000) == 0 and (st[EFER] & 0x100) != 0:
        if (st[CR4] & 0x20) == 0:
            raise_exc(st, GP, 0)
            return
        st[EFER] |= 0x400
    if (v & 0x80000000) == 0 and (old & 0x80000000) != 0 and (st[EFER] & 0x400) != 0:
        if st[MODE64] != 0:
            raise_exc(st, GP, 0)
            return
        st[EFER] &= ~0x400
    st[CR0] = v
    if ((old ^ v) & 0x80010001) != 0:
        tlb_flush(st, False, ST_FLUSH_CR0)
    update_mode(st)


@njit
def write_cr4(st, v):
    if (v & ~0x3777FF) != 0 or (v & 0x2000) != 0:     # VMXE not offered
        raise_exc(st, GP, 0)
        return
    if (st[EFER] & 0x400) != 0 and (v & 0x20) == 0:
        raise_exc(st, GP, 0)
        return
    old = st[CR4]
    st[CR4] = v
    if ((old ^ v) & 0x3000B0) != 0:
        tlb_flush(st, False, ST_FLUSH_CR4)


@njit
def x_crdr(st, pm):
    d = D
    sub = st[ix(d + D_SUB)]
    if not need_cpl0(st):
        return
    n = st[ix(d + D_REG)]
    r = st[ix(d + D_RM)]
    size = 8 if st[MODE64] != 0 else 4
    if sub == 0 or sub == 2:
        if n == 0:
            if sub == 0:
                set_reg(st, r, size, st[CR0])
            else:
                write_cr0(st, get_reg(st, r, size))
        elif n == 2:
            if sub == 0:
                set_reg(st, r, size, st[CR2])
            else:
                st[CR2] = get_reg(st, r, size)
        elif n == 3:
            if sub == 0:
                set_reg(st, r, size, st[CR3])
            else:
                st[CR3] = get_reg(st, r, size)
                tlb_flush(st, (st[CR4] & 0x80) != 0, ST_FLUSH_CR3)
        elif n == 4:
            if sub == 0:
                set_reg(st, r, size, st[CR4])
            else:
                write_cr4(st, get_reg(st, r, size))
        elif n == 8 and st[MODE64] != 0:
            if sub == 0:
                set_reg(st, r, size, st[CR8])
            else:
                v = get_reg(st, r, size)
                if (v & ~0xF) != 0:
                    raise_exc(st, GP, 0)
                    return
                st[CR8] = v
        else:
            raise_exc(st, UD, -1)
        return
    # MOV DRn
    n &= 7
    if (n == 4 or n == 5):
        if (st[CR4] & 8) != 0:
            raise_exc(st, UD, -1)
            return
        n += 2
    if sub == 1:
        if n < 4:
            v = st[ix(DR0 + n)]
        elif n == 6:
            v = st[DR6]
        else:
            v = st[DR7]
        set_reg(st, r, size, v)
    else:
        v = get_reg(st, r, size)
        if n < 4:
            st[ix(DR0 + n)] = v
        elif n == 6:
            st[DR6] = (v & 0x1E00F) | 0xFFFF0FF0
        else:
            st[DR7] = (v & 0xFFFF2FFF) | 0x400


@njit
def load_system_seg(st, pm, which, sel):
    """LLDT (which=LDTR) or LTR (which=TR) from the GDT."""
    sel &= 0xFFFF
    if (sel & 0xFFFC) == 0:
        if which == TR:
            raise_exc(st, GP, 0)
            return
        seg_set(st, LDTR, sel, 0, 0, A_UNUSABLE)
        return
    if (sel & 4) != 0:
        raise_exc(st, GP, sel & 0xFFFC)
        return
    lo, hi, a = read_desc(st, pm, sel)
    if a < 0:
        return
    attr = desc_attr(hi)
    t = attr & 0xF
    if (attr & A_S) != 0 or (which == LDTR and t != 2) or (which == TR and t != 9 and t != 1):
        raise_exc(st, GP, sel & 0xFFFC)
        return
    if (attr & A_P) == 0:
        raise_exc(st, NP, sel & 0xFFFC)
        return
    base = desc_base(lo, hi)
    if (st[EFER] & 0x400) != 0:
        if (sel & 0xFFF8) + 15 > st[GDTR_LIMIT]:
            raise_exc(st, GP, sel & 0xFFFC)
            return
        up = sys_read(st, pm, st[GDTR_BASE] + (sel & 0xFFF8) + 8, 4)
        base |= up << 32
    if which == TR:
        sys_write(st, pm, a + 4, 4, hi | 0x200)
        if st[ABORT] != 0:
            return
        attr |= 2
    seg_set(st, which, sel, base, desc_limit(lo, hi), attr)


@njit
def x_sys(st, pm):
    d = D
    sub = st[ix(d + D_SUB)]
    size = st[ix(d + D_OSZ)]
    mod = st[ix(d + D_MOD)]
    if sub <= 5 or sub == 13 or sub == 14:
        if st[PROT] == 0 or (st[RFLAGS] & F_VM) != 0:
            raise_exc(st, UD, -1)
            return
    if sub == 0 or sub == 1:          # SLDT / STR
        v = st[ix(SEG + 4 * (LDTR if sub == 0 else TR) + SEL)]
        if mod == 3:
            set_reg(st, st[ix(d + D_RM)], size, v)
        else:
            rm_write(st, pm, 2, v)
    elif sub == 2 or sub == 3:        # LLDT / LTR
        if not need_cpl0(st):
            return
        v = rm_read(st, pm, 2)
        if st[ABORT] != 0:
            return
        load_system_seg(st, pm, LDTR if sub == 2 else TR, v)
    elif sub == 4 or sub == 5 or sub == 13 or sub == 14:   # VERR VERW LAR LSL
        sel = rm_read(st, pm, 2)
        if st[ABORT] != 0:
            return
        ok = False
        attr = 0
        lim = 0
        hi = 0
        if (sel & 0xFFFC) != 0 and desc_addr(st, sel) >= 0:
            lo, hi, a = read_desc(st, pm, sel)
            if st[ABORT] != 0:
                return
            attr = desc_attr(hi)
            lim = desc_limit(lo, hi)
            dpl = (attr >> A_DPL_SHIFT) & 3
            conf = (attr & 0x1C) == 0x1C
            priv = conf or (dpl >= st[CPL] and dpl >= (sel & 3))
            t = attr & 0xF
            if sub == 4:
                ok = (attr & A_S) != 0 and priv and ((t & 8) == 0 or (t & 2) != 0)
            elif sub == 5:
                ok = (attr & A_S) != 0 and priv and (t & 0xA) == 2
            else:
                if (attr & A_S) != 0:
                    ok = priv
                else:
                    lm = (st[EFER] & 0x400) != 0
                    if sub == 13:
                        tm = 0x1A04 if lm else 0x1A3E
                    else:
                        tm = 0xA04 if lm else 0xA0E
                    ok = priv and ((tm >> t) & 1) != 0
        if ok:
            st[RFLAGS] |= F_ZF
            if sub == 13:
                set_reg(st, st[ix(d + D_REG)], size, (hi & 0xF0FF00) & msk(size))
            elif sub == 14:
                set_reg(st, st[ix(d + D_REG)], size, lim & msk(size))
        else:
            st[RFLAGS] &= ~F_ZF
    elif sub == 6 or sub == 7:        # SGDT / SIDT (reg forms: VMX/SVM/monitor)
        if mod == 3:
            internal(st)
            return
        lim = st[GDTR_LIMIT] if sub == 6 else st[IDTR_LIMIT]
        base = st[GDTR_BASE] if sub == 6 else st[IDTR_BASE]
        seg = st[ix(d + D_SEG)]
        off = ea(st)
        bsz = 8 if st[MODE64] != 0 else 4
        if st[PROT] != 0 and st[CPL] != 0 and (st[CR4] & 0x800) != 0:
            raise_exc(st, GP, 0)         # UMIP
            return
        wr(st, pm, seg, off, 2, lim)
        wr(st, pm, seg, (off + 2) & msk(st[ix(d + D_ASZ)]), bsz, base if bsz == 8 else base & 0xFFFFFFFF)
    elif sub == 8 or sub == 9:        # LGDT / LIDT (reg forms: VM*, XGETBV, CLAC/STAC, ...)
        if mod == 3:
            if sub == 9 and (st[ix(d + D_RM)] == 2 or st[ix(d + D_RM)] == 3):
                if not need_cpl0(st):
                    return
                if st[ix(d + D_RM)] == 2:
                    st[RFLAGS] &= ~F_AC          # CLAC
                else:
                    st[RFLAGS] |= F_AC           # STAC
                return
            internal(st)
            return
        if not need_cpl0(st):
            return
        seg = st[ix(d + D_SEG)]
        off = ea(st)
        lim = rd(st, pm, seg, off, 2)
        bsz = 8 if st[MODE64] != 0 else 4
        base = rd(st, pm, seg, (off + 2) & msk(st[ix(d + D_ASZ)]), bsz)
        if st[ABORT] != 0:
            return
        if bsz == 4 and size == 2:
            base &= 0xFFFFFF
        if sub == 8:
            st[GDTR_BASE] = base
            st[GDTR_LIMIT] = lim
        else:
            st[IDTR_BASE] = base
            st[IDTR_LIMIT] = lim
    elif sub == 10:                   # SMSW
        if st[PROT] != 0 and st[CPL] != 0 and (st[CR4] & 0x800) != 0:
            raise_exc(st, GP, 0)
            return
        if mod == 3:
            set_reg(st, st[ix(d + D_RM)], size, st[CR0] & msk(size))
        else:
            rm_write(st, pm, 2, st[CR0] & 0xFFFF)
    elif sub == 11:                   # LMSW
        if not need_cpl0(st):
            return
        v = rm_read(st, pm, 2)
        if st[ABORT] != 0:
            return
        nv = (st[CR0] & ~0xE) | (v & 0xE) | (st[CR0] & 1) | (v & 1)
        from_cr0 = st[CR0]
        st[CR0] = nv
        if ((from_cr0 ^ nv) & 1) != 0:
            tlb_flush(st, False, ST_FLUSH_CR0)
        update_mode(st)
    elif sub == 12:                   # INVLPG / SWAPGS / RDTSCP
        if mod == 3:
            rm = st[ix(d + D_RM)] & 7
            if rm == 0 and st[MODE64] != 0:      # SWAPGS
                if not need_cpl0(st):
                    return
                t = st[ix(SEG + 4 * GS + BASE)]
                st[ix(SEG + 4 * GS + BASE)] = st[M_KGSBASE]
                st[M_KGSBASE] = t
                return
            if rm == 1:                          # RDTSCP
                if cpuid_bit(st, 0x80000001, 0, 3, 27) == 0:
                    raise_exc(st, UD, -1)
                    return
                t = st[M_TSC] + st[ix(STAT + ST_INSNS)]
                st[RAX] = t & 0xFFFFFFFF
                st[RDX] = (t >> 32) & 0xFFFFFFFF
                st[RCX] = st[M_TSC_AUX] & 0xFFFFFFFF
                return
            if rm == 0:
                raise_exc(st, UD, -1)
                return
            internal(st)
            return
        if not need_cpl0(st):
            return
        off = ea(st)
        seg = st[ix(d + D_SEG)]
        if st[MODE64] != 0:
            lin = off + (st[ix(SEG + 4 * seg + BASE)] if seg >= FS else 0)
        else:
            lin = (st[ix(SEG + 4 * seg + BASE)] + off) & 0xFFFFFFFF
        tlb_flush_page(st, lin)
        st[ix(STAT + ST_INVLPG)] += 1
        st[TLB_LAST_FLUSH] = ST_INVLPG
        st[TLB_LAST_FLUSH_RIP] = st[INSN_RIP]
    elif sub == 15:                   # CLTS
        if not need_cpl0(st):
            return
        st[CR0] &= ~8
    elif sub == 16:                   # INVD / WBINVD
        need_cpl0(st)
    elif sub == 17:                   # WRMSR
        if not need_cpl0(st):
            return
        v = (st[RAX] & 0xFFFFFFFF) | ((st[RDX] & 0xFFFFFFFF) << 32)
        if not msr_write(st, st[RCX] & 0xFFFFFFFF, v, False):
            raise_exc(st, GP, 0)
    elif sub == 18:                   # RDMSR
        if not need_cpl0(st):
            return
        ok, v = msr_read(st, st[RCX] & 0xFFFFFFFF)
        if not ok:
            raise_exc(st, GP, 0)
            return
        st[RAX] = v & 0xFFFFFFFF
        st[RDX] = (v >> 32) & 0xFFFFFFFF
