"""The core's software TLB as learners see it (Core.tlb()): hits and misses counted, every
flush counted by its cause (MOV to CR3, CR0/CR4 paging changes, INVLPG, memslot changes),
global pages surviving a CR3 write when CR4.PGE is set."""
from kvmlab.cpu import EXIT_HLT
from tests.cpu_reference.machine import Machine, CODE, asm


def long_mode(src):
    m = Machine()
    m.setup('long', paging='4level')
    m.load(src, 64)
    return m


def test_a_loop_over_one_page_misses_once_per_page_then_hits():
    m = long_mode('mov rcx, 100; mov rsi, 0x305000; again: mov eax, [rsi]; dec rcx; jnz again; hlt')
    assert m.core.run(10000) == EXIT_HLT
    t = m.core.tlb()
    assert t.misses == 2                    # the code page and the data page, once each
    assert t.hits >= 100                    # at least the 100 data reads
    data = t.lookup(0x305abc)
    assert data is not None and data.physical == 0x305000 and data.writable
    assert t.lookup(0x123456000) is None


def test_two_pages_256_pages_apart_share_a_direct_mapped_entry_and_keep_missing():
    # CODE (0x100000) and 0x300000 both index entry 0 of the 256-entry direct-mapped TLB
    m = long_mode('mov rcx, 100; mov rsi, 0x300000; again: mov eax, [rsi]; dec rcx; jnz again; hlt')
    assert m.core.run(10000) == EXIT_HLT
    t = m.core.tlb()
    assert t.misses > 150                   # conflict misses: code and data evict each other
    assert len(t.entries) == 1


def test_a_mov_to_cr3_flushes_and_is_named_as_the_cause():
    m = long_mode('mov rax, [0x305000]; mov rax, cr3; mov cr3, rax; hlt')
    assert m.core.run(100) == EXIT_HLT
    t = m.core.tlb()
    assert t.flushes_by_cause['MOV to CR3'] == 1
    assert t.last_flush == 'MOV to CR3'
    assert t.last_flush_rip == CODE + len(asm('mov rax, [0x305000]; mov rax, cr3', 64, CODE))
    assert t.lookup(0x305000) is None                # dropped; only the code page refilled
    assert t.lookup(CODE) is not None


def test_invlpg_drops_one_page_and_counts_separately_from_flushes():
    m = long_mode('mov rsi, 0x305000; mov rax, [rsi]; mov rdi, 0x306000; mov rbx, [rdi]; invlpg [rsi]; hlt')
    assert m.core.run(100) == EXIT_HLT
    t = m.core.tlb()
    assert t.invlpg == 1 and t.last_flush == 'INVLPG (one page)'
    assert t.lookup(0x305000) is None and t.lookup(0x306000) is not None
    assert t.flushes_by_cause['MOV to CR3'] == 0


def test_global_pages_survive_a_cr3_write_when_cr4_pge_is_set():
    m = Machine()
    m.setup('long', paging='4level', cr4_extra=0x80)
    # make the leaf of 0x305000 global (G = bit 8) before the first access
    from tests.test_cpu_modes import leaf_entry
    import struct
    leaf = leaf_entry(m, '4level', 0x305000)
    struct.pack_into('<Q', m.mem, leaf, m.q(leaf) | 0x100)
    m.load('mov rsi, 0x305000; mov rax, [rsi]; mov rdi, 0x306000; mov rbx, [rdi]; mov rax, cr3; mov cr3, rax; hlt', 64)
    assert m.core.run(100) == EXIT_HLT
    t = m.core.tlb()
    assert t.lookup(0x305000).global_
    assert t.lookup(0x306000) is None


def test_a_memslot_change_flushes_on_the_next_run():
    m = long_mode('mov rax, [0x305000]; hlt; hlt')
    assert m.core.run(100) == EXIT_HLT
    m.core.pm.invalidate()
    assert m.core.run(100) == EXIT_HLT
    t = m.core.tlb()
    assert t.last_flush == 'memslot change' and t.last_flush_rip is None
    assert t.flushes_by_cause['memslot change'] == 2     # the first run's, and this one
