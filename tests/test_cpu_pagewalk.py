"""The core's page walker agrees with a slow reference walker (tests/cpu_reference/walker.py)
on random page tables in all three formats: translation, #PF error code, A/D bits; and
KVM_TRANSLATE has no side effects."""
import random
import struct

import numpy as np
import pytest

from kvmlab.cpu import Core, PhysMap
from kvmlab.cpu import layout as L
from tests.cpu_reference import walker

MEM = 0x100000
POOL = list(range(0x10000, 0x40000, 0x1000))      # 48 table pages


def random_tables(rng, fmt, mem):
    """Fill the pool pages with random entries; returns CR3."""
    wide = fmt != '32'
    for page in POOL:
        n = 512 if wide else 1024
        for i in range(n):
            p = rng.random() < 0.8
            e = (1 if p else 0) | (rng.random() < 0.75) << 1 | (rng.random() < 0.75) << 2 \
                | (rng.random() < 0.5) << 5 | (rng.random() < 0.3) << 6 | (rng.random() < 0.3) << 8
            ps = rng.random() < 0.15
            if ps:
                e |= 0x80 | (rng.randrange(0, 4) << 30)
                if rng.random() < 0.3:          # large-page bits 13.. (PSE-36 / reserved)
                    e |= 1 << rng.randrange(12, 30 if wide else 22)
            else:
                e |= rng.choice(POOL)
            if wide and rng.random() < 0.15:
                e |= 1 << 63
            if wide and rng.random() < 0.1:     # address bits, some at or above MAXPHYADDR
                e |= 1 << rng.randrange(32, 63)
            if wide:
                struct.pack_into('<Q', mem, page + 8 * i, e)
            else:
                struct.pack_into('<I', mem, page + 4 * i, e & 0xFFFFFFFF)
    cr3 = rng.choice(POOL)
    if fmt == 'pae':
        cr3 += 32 * rng.randrange(0, 128)
        for i in range(4):
            e = rng.choice(POOL) | 1 if rng.random() < 0.9 else 0
            if rng.random() < 0.05:
                e |= 1 << 5     # reserved in a PAE PDPTE
            if rng.random() < 0.05:
                e |= 1 << rng.randrange(36, 63)
            struct.pack_into('<Q', mem, cr3 + 8 * i, e)
    return cr3


def make_core(rng, fmt, mem):
    pm = PhysMap()
    pm.set_slot(0, 0, mem)
    core = Core(pm)
    st = core.state
    cr3 = random_tables(rng, fmt, mem)
    st[L.CR0] = 0x80000011 | (0x10000 if rng.random() < 0.5 else 0)
    st[L.CR3] = cr3
    st[L.CR4] = {'32': 0x10 if rng.random() < 0.7 else 0, 'pae': 0x20, '4level': 0x20}[fmt]
    if rng.random() < 0.3:
        st[L.CR4] |= 1 << 20            # SMEP
    if rng.random() < 0.3:
        st[L.CR4] |= 1 << 21            # SMAP
    st[L.EFER] = (0x500 if fmt == '4level' else 0) | (0x800 if rng.random() < 0.6 else 0)
    # MAXPHYADDR and 1 GiB pages come from the CPUID table (no table: 36 bits, no 1 GiB pages)
    if rng.random() < 0.8:
        mp = rng.choice([36, 39, 40, 46, 48, 52])
        core.set_cpuid([(0x80000000, 0, 0, 0x80000008, 0, 0, 0), (0x80000008, 0, 0, 0x3000 | mp, 0, 0, 0),
                        (0x80000001, 0, 0, 0, 0, 0, (rng.random() < 0.7) << 26)])
    return core


def cpu_features(core):
    """The MAXPHYADDR / 1 GiB pages the core's CPUID table gives, for the reference walker."""
    ents = core._cpuid
    top = next((e[3] for e in ents if e[0] == 0x80000000), 0)
    mp = next((e[3] & 0xFF for e in ents if e[0] == 0x80000008), 36) if top >= 0x80000008 else 36
    return dict(maxphyaddr=mp, gbpages=any(e[0] == 0x80000001 and e[6] >> 26 & 1 for e in ents))


@pytest.mark.parametrize('fmt', ['32', 'pae', '4level'])
def test_random_walks_match_the_reference_walker_including_a_d_bits(fmt):
    from kvmlab.cpu.mmu import walk
    seed = random.randrange(1 << 30)
    print('seed', seed)
    rng = random.Random(seed)
    checked = 0
    rsvd_seen = [0]
    for trial in range(20):
        mem = np.zeros(MEM, np.uint8)
        core = make_core(rng, fmt, mem)
        st = core.state
        for _ in range(150):
            if fmt == '4level':
                lin = rng.getrandbits(48)
                if lin >> 47:
                    lin |= 0xFFFF << 48
                lin -= (1 << 64) if lin >> 63 else 0
            else:
                lin = rng.getrandbits(32)
            acc = set(a for a in 'wux' if rng.random() < 0.4)
            if 'x' in acc:
                acc.discard('w')
            ac = rng.random() < 0.5
            st[L.RFLAGS] = 2 | (L.F_AC if ac else 0)
            ref = mem.copy()

            def rd(a, n):
                return int.from_bytes(ref[a:a + n].tobytes(), 'little') if a + n <= MEM else 0

            def wr(a, n, v):
                if a + n <= MEM:
                    ref[a:a + n] = np.frombuffer(int(v & ((1 << (8 * n)) - 1)).to_bytes(n, 'little'), np.uint8)
            regs = dict(cr0=int(st[L.CR0]), cr3=int(st[L.CR3]), cr4=int(st[L.CR4]),
                        efer=int(st[L.EFER]), ac=ac, **cpu_features(core))
            want_phys, want_err = walker.walk(rd, wr, regs, lin & ((1 << 64) - 1), acc)
            a = (1 if 'w' in acc else 0) | (2 if 'u' in acc else 0) | (4 if 'x' in acc else 0)
            phys, f = walk(st, core.pm.pm, lin, a, 1)
            if want_phys is None and want_err & 8:
                rsvd_seen[0] += 1
            where = 'seed %d fmt %s lin %x acc %s' % (seed, fmt, lin & ((1 << 64) - 1), sorted(acc))
            if want_phys is None:
                assert phys == -1 and f == want_err, where
            else:
                assert phys == want_phys, where
            assert np.array_equal(mem, ref), where + ': A/D bits differ'
            checked += 1
    assert checked == 3000
    # 32-bit paging has reserved bits only in 4 MiB PDEs (bits 21:13 past the PSE-36 width)
    assert rsvd_seen[0] >= (2 if fmt == '32' else 20), 'too few reserved-bit faults: %d' % rsvd_seen[0]


def test_translate_has_no_side_effects_and_reports_unmapped_and_noncanonical_as_invalid():
    rng = random.Random(1)
    mem = np.zeros(MEM, np.uint8)
    core = make_core(rng, '4level', mem)
    before = mem.copy()
    results = [core.translate(rng.getrandbits(47)) for _ in range(500)]
    assert np.array_equal(mem, before)
    assert any(v for v, _ in results) and any(not v for v, _ in results)
    assert all(p == 2 ** 64 - 1 for v, p in results if not v)
    assert core.translate(0x0000800000000000) == (False, 2 ** 64 - 1)
