"""The state array's regions (kvmlab.cpu.layout) never overlap: every index the core
writes belongs to exactly one field."""
from kvmlab.cpu import layout as L


def regions():
    """(name, first index, length) of every field of st."""
    r = [('GPRs', 0, 16), ('RIP', L.RIP, 1), ('RFLAGS', L.RFLAGS, 1), ('segments', L.SEG, 32),
         ('GDTR/IDTR', L.GDTR_BASE, 4), ('CRs+EFER', L.CR0, 6), ('DR0-3', L.DR0, 4),
         ('DR6/DR7', L.DR6, 2), ('MSRs', L.M_STAR, L.M_DEBUGCTL - L.M_STAR + 1),
         ('TLB_LAST_FLUSH_RIP', L.TLB_LAST_FLUSH_RIP, 1), ('CPL', L.CPL, 1),
         ('VCPU_ID', L.VCPU_ID, 1), ('X87_NOP', L.X87_NOP, 1), ('MODE64', L.MODE64, 1),
         ('PROT', L.PROT, 1), ('NEXT_RIP', L.NEXT_RIP, 1), ('SHADOW_NEW', L.SHADOW_NEW, 1),
         ('SOFT_INT', L.SOFT_INT, 1), ('LOCK_OK', L.LOCK_OK, 1),
         ('TLB_LAST_FLUSH', L.TLB_LAST_FLUSH, 1), ('events', L.PEND_IRQ, L.PEND_EXC - L.PEND_IRQ + 1),
         ('exit scalars', L.EXIT_REASON, L.INT_BYTES - L.EXIT_REASON),
         ('INT_BYTES', L.INT_BYTES, 15), ('EXIT_VENDOR', L.EXIT_VENDOR, 1),
         ('EXIT_DATA', L.EXIT_DATA, L.EXIT_DATA_N), ('completion', L.COMP_KIND, 3),
         ('COMP_DATA', L.COMP_DATA, 1024), ('scratch', L.ABORT, L.RF_NEXT - L.ABORT + 1),
         ('GDBG', L.GDBG_CTRL, 9), ('DBG_SKIP_HWBP', L.DBG_SKIP_HWBP, 1),
         ('decoded', L.D, L.D_SIZE), ('IB', L.IB, 16), ('IB_N', L.IB_N, 1),
         ('STAT', L.STAT, L.STAT_N), ('CPUID_COUNT', L.CPUID_COUNT, 1),
         ('CPUID', L.CPUID, 8 * L.CPUID_MAX), ('MQ_N', L.MQ_N, 1), ('MQ', L.MQ, 12),
         ('TLB', L.TLB, 4 * L.TLB_N), ('SAVE', L.SAVE, 32), ('IC', L.IC, L.IC_N * L.IC_STRIDE),
         ('MAXPHYADDR', L.MAXPHYADDR, 1), ('GBPAGES', L.GBPAGES, 1),
         ('fast path counters', L.FAST_OFF, 4), ('FSEG', L.FSEG, L.BC - L.FSEG),
         ('block cache', L.BC, L.BC_N * L.BC_STRIDE)]
    return r


def test_no_two_fields_of_the_state_array_share_an_index():
    owner = {}
    for name, first, n in regions():
        assert n > 0, name
        for i in range(first, first + n):
            assert i not in owner, f'{name} and {owner.get(i)} both use st[{i}]'
            owner[i] = name
    assert max(owner) < L.STATE_SIZE


def test_the_counters_fit_before_the_cpuid_table():
    assert L.STAT + L.STAT_N <= L.CPUID_COUNT
    assert len(L.STAT_NAMES) == L.STAT_N
