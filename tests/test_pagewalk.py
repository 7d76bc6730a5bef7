"""The reference page walker (kvmlab.vmm.pagewalk) on page tables built by hand, and
against KVM_TRANSLATE on /dev/kvm in long mode (the only paging mode it runs here, §19)."""
import struct

import pytest

import kvmlab
from kvmlab.vmm import pagewalk as pw

P, RW, US, A, D, PS, G = 1, 2, 4, 0x20, 0x40, 0x80, 0x100
NX = 1 << 63
PG_PE = 0x80000001
WP = 1 << 16
PAE, PSE = 0x20, 0x10
LONG_EFER = 0x500
NXE = 1 << 11


def put(mem, addr, value, size=8):
    mem.write(addr, value.to_bytes(size, "little"))


def entry(mem, addr, size=8):
    return int.from_bytes(mem.read(addr, size), "little")


# ------------------------------------------------------------------ 32-bit paging
@pytest.fixture
def mem32():
    mem = kvmlab.GuestMemory(0x10000)
    put(mem, 0x1000 + 4 * 1, 0x2000 | P | RW | US, 4)        # PDE[1] -> PT at 0x2000
    put(mem, 0x2000 + 4 * 3, 0x5000 | P | RW, 4)             # PTE[3] -> 0x5000
    put(mem, 0x1000 + 4 * 2, 0x00800000 | PS | P | RW, 4)    # PDE[2]: 4 MiB page at 8 MiB
    put(mem, 0x1000 + 4 * 3, 0x00C00000 | (1 << 13) | PS | P, 4)   # PSE-36: PA bit 32 set
    return mem


def test_a_32_bit_walk_with_4k_pages_reads_the_pde_then_the_pte(mem32):
    w = pw.walk(mem32, 0x00403004, cr0=PG_PE, cr3=0x1000)
    assert w.mode == "32-bit" and w.ok
    assert [lv.name for lv in w.levels] == ["PDE", "PTE"]
    assert [(lv.index, lv.entry_addr) for lv in w.levels] == [(1, 0x1004), (3, 0x200C)]
    assert w.gpa == 0x5004 and w.page_size == 0x1000
    assert w.writable and not w.usermode          # U/S=0 in the PTE
    assert w.second_stage == "slot 0 + 0x5004"
    assert [(n, hi, lo, v) for n, hi, lo, v in w.split] == [("PD", 31, 22, 1), ("PT", 21, 12, 3), ("offset", 11, 0, 4)]


def test_a_32_bit_pse_pde_maps_a_4m_page_only_when_cr4_pse_is_set(mem32):
    w = pw.walk(mem32, 0x00812345, cr0=PG_PE, cr3=0x1000, cr4=PSE)
    assert w.ok and w.gpa == 0x812345 and w.page_size == 4 << 20
    assert [lv.name for lv in w.levels] == ["PDE"] and w.levels[0].leaf
    assert w.split[-1] == ("offset", 21, 0, 0x12345)
    without = pw.walk(mem32, 0x00812345, cr0=PG_PE, cr3=0x1000)
    assert [lv.name for lv in without.levels] == ["PDE"]      # PS ignored: 0x800000 is a page table,
    assert "not in any memslot" in without.fault.reason       # and it lies outside guest RAM


def test_a_pse_36_pde_supplies_physical_address_bits_above_4g(mem32):
    w = pw.walk(mem32, 0x00C00010, cr0=PG_PE, cr3=0x1000, cr4=PSE)
    assert w.gpa == 0x1_00C00010
    assert w.second_stage == "no memslot (MMIO)"


def test_a_32_bit_walk_faults_with_a_not_present_error_code(mem32):
    w = pw.walk(mem32, 0x00000000, cr0=PG_PE, cr3=0x1000, access="write", user=True)
    assert w.fault.vector == 14 and w.fault.error_code == pw.PF_W | pw.PF_U
    assert w.fault.level == "PDE"


def test_a_user_write_to_a_read_only_4m_page_is_a_protection_fault(mem32):
    w = pw.walk(mem32, 0x00C00000, cr0=PG_PE, cr3=0x1000, cr4=PSE, access="write", user=True)
    assert w.fault.error_code == pw.PF_P | pw.PF_W | pw.PF_U


# ------------------------------------------------------------------ PAE
@pytest.fixture
def mem_pae():
    mem = kvmlab.GuestMemory(0x10000)
    put(mem, 0x1000 + 8 * 1, 0x2000 | P)                   # PDPTE[1] -> PD 0x2000
    put(mem, 0x2000 + 8 * 0, 0x3000 | P | RW | US)         # PDE[0] -> PT 0x3000
    put(mem, 0x3000 + 8 * 5, 0x6000 | P | US | NX)         # PTE[5] -> 0x6000, NX
    put(mem, 0x2000 + 8 * 1, 0x400000 | PS | P | RW)       # PDE[1]: 2 MiB page at 4 MiB
    put(mem, 0x1000 + 8 * 2, 0x4000 | P | RW)              # PDPTE[2] with a reserved bit (R/W)
    return mem


def test_a_pae_walk_goes_through_the_4_entry_pdpt(mem_pae):
    w = pw.walk(mem_pae, 0x40005008, cr0=PG_PE, cr3=0x1000, cr4=PAE, efer=NXE)
    assert w.mode == "PAE" and w.ok
    assert [lv.name for lv in w.levels] == ["PDPTE", "PDE", "PTE"]
    assert w.gpa == 0x6008 and not w.writable and w.usermode and not w.executable
    assert [n for n, *_ in w.split] == ["PDPT", "PD", "PT", "offset"]


def test_a_pae_pde_with_ps_maps_a_2m_page(mem_pae):
    w = pw.walk(mem_pae, 0x40212345, cr0=PG_PE, cr3=0x1000, cr4=PAE)
    assert w.ok and w.gpa == 0x412345 and w.page_size == 2 << 20


def test_a_pae_fetch_from_an_nx_page_faults_with_the_instruction_bit(mem_pae):
    w = pw.walk(mem_pae, 0x40005000, cr0=PG_PE, cr3=0x1000, cr4=PAE, efer=NXE, access="fetch")
    assert w.fault.error_code == pw.PF_P | pw.PF_I


def test_nx_without_efer_nxe_is_a_reserved_bit_fault(mem_pae):
    w = pw.walk(mem_pae, 0x40005000, cr0=PG_PE, cr3=0x1000, cr4=PAE)
    assert w.fault.error_code & pw.PF_RSVD and w.fault.level == "PTE"


def test_a_pae_pdpte_with_access_bits_set_is_a_reserved_bit_fault(mem_pae):
    w = pw.walk(mem_pae, 0x80000000, cr0=PG_PE, cr3=0x1000, cr4=PAE)
    assert w.fault.error_code == pw.PF_P | pw.PF_RSVD and w.fault.level == "PDPTE"


# ------------------------------------------------------------------ 4-level
@pytest.fixture
def mem64():
    """PML4 0x1000 -> PDPT 0x2000; PDPT[0] -> PD 0x3000; PD[0] -> PT 0x4000.
    PTE[1] 4K RW -> 0x8000; PTE[2] read-only -> 0x9000; PDE[1] 2M; PDPTE[1] 1G (user, NX);
    PML4[511] -> PDPT 0x5000 whose last entry is a 1G page (the top of the address space)."""
    mem = kvmlab.GuestMemory(0x10000)
    put(mem, 0x1000, 0x2000 | P | RW | US)
    put(mem, 0x2000, 0x3000 | P | RW | US)
    put(mem, 0x3000, 0x4000 | P | RW)
    put(mem, 0x4000 + 8 * 1, 0x8000 | P | RW | G)
    put(mem, 0x4000 + 8 * 2, 0x9000 | P)
    put(mem, 0x3000 + 8 * 1, 0x200000 | PS | P | RW)
    put(mem, 0x2000 + 8 * 1, 0x40000000 | PS | P | RW | US | NX)
    put(mem, 0x1000 + 8 * 511, 0x5000 | P | RW)
    put(mem, 0x5000 + 8 * 511, 0x80000000 | PS | P | RW)
    return mem


def walk64(mem, va, **kw):
    kw.setdefault("cr0", PG_PE | WP)
    return pw.walk(mem, va, cr3=0x1000, cr4=PAE, efer=LONG_EFER | kw.pop("nxe", 0), **kw)


def test_a_4_level_walk_of_a_4k_page_reads_four_entries(mem64):
    w = walk64(mem64, 0x1ABC)
    assert w.mode == "4-level" and w.gpa == 0x8ABC and w.page_size == 0x1000
    assert [lv.name for lv in w.levels] == ["PML4E", "PDPTE", "PDE", "PTE"]
    assert [lv.next for lv in w.levels] == [0x2000, 0x3000, 0x4000, 0x8000]
    assert w.levels[-1].flags["G"] and not w.levels[0].leaf and w.levels[-1].leaf
    assert "PAT" in w.levels[-1].flags and "PS" not in w.levels[-1].flags


def test_a_4_level_walk_stops_at_a_2m_pde_and_a_1g_pdpte(mem64):
    two = walk64(mem64, 0x345678)
    assert two.page_size == 2 << 20 and two.gpa == 0x345678 and len(two.levels) == 3
    one = walk64(mem64, 0x40000000 + 0x123456, nxe=NXE)
    assert one.page_size == 1 << 30 and one.gpa == 0x40123456 and len(one.levels) == 2
    assert one.split[-1] == ("offset", 29, 0, 0x123456)
    assert one.usermode and not one.executable
    assert walk64(mem64, 0x40000000, nxe=NXE, access="fetch").fault.error_code == pw.PF_P | pw.PF_I


def test_the_top_of_the_canonical_address_space_walks_through_pml4_entry_511(mem64):
    w = walk64(mem64, 0xFFFFFFFFC0001000)
    assert w.ok and w.gpa == 0x80001000
    assert [lv.index for lv in w.levels] == [511, 511]


def test_a_non_canonical_address_is_a_general_protection_fault_not_a_page_fault(mem64):
    w = walk64(mem64, 0x0000800000000000)
    assert w.fault.vector == 13 and w.levels == []
    assert "#GP" in str(w)


def test_a_supervisor_write_to_a_read_only_page_faults_only_with_cr0_wp(mem64):
    assert walk64(mem64, 0x2000, access="write").fault.error_code == pw.PF_P | pw.PF_W
    assert walk64(mem64, 0x2000, access="write", cr0=PG_PE).ok


def test_a_user_access_to_a_supervisor_page_is_a_protection_fault(mem64):
    w = walk64(mem64, 0x1000, user=True)
    assert w.fault.error_code == pw.PF_P | pw.PF_U and w.fault.level == "PTE"


def test_a_not_present_entry_faults_at_its_level_with_p_clear(mem64):
    w = walk64(mem64, 0x3000, access="write")
    assert w.fault.error_code == pw.PF_W and w.fault.level == "PTE" and len(w.levels) == 4


def test_ps_in_a_pml4_entry_is_a_reserved_bit_fault(mem64):
    put(mem64, 0x1000 + 8 * 2, 0x2000 | P | PS)
    w = walk64(mem64, 2 << 39)
    assert w.fault.error_code == pw.PF_P | pw.PF_RSVD and w.fault.level == "PML4E"


def test_address_bits_above_maxphyaddr_are_reserved(mem64):
    put(mem64, 0x4000 + 8 * 7, (1 << 47) | P)
    assert walk64(mem64, 0x7000, maxphyaddr=46).fault.error_code & pw.PF_RSVD
    assert walk64(mem64, 0x7000).ok


def test_a_table_outside_every_memslot_is_reported_as_such(mem64):
    put(mem64, 0x1000 + 8 * 3, 0x7000_0000 | P)
    w = walk64(mem64, 3 << 39)
    assert w.fault is not None and "not in any memslot" in w.fault.reason


def test_the_walk_leaves_accessed_and_dirty_bits_alone_unless_asked(mem64):
    walk64(mem64, 0x1000, access="write")
    assert entry(mem64, 0x4008) & (A | D) == 0
    walk64(mem64, 0x1000, access="write", set_ad=True)
    assert entry(mem64, 0x4008) & (A | D) == A | D
    assert all(entry(mem64, a) & A for a in (0x1000, 0x2000, 0x3000))
    walk64(mem64, 0x345678, set_ad=True)
    assert entry(mem64, 0x3008) & (A | D) == A              # a read sets only A


def test_the_text_form_shows_every_level_and_the_second_stage_as_a_slot_offset(mem64):
    text = str(walk64(mem64, 0x1ABC))
    assert "PML4[47:39]=0x0" in text and "offset[11:0]=0xabc" in text
    assert "PTE   [  1] @ 0x4008" in text and "-> page 0x8000 (4K)" in text
    assert "second stage: GPA 0x8abc -> slot 0 + 0x8abc" in text


def test_the_second_stage_names_the_slot_that_holds_the_gpa():
    low, high = kvmlab.GuestMemory(0x10000), kvmlab.GuestMemory(0x2000)
    phys = pw.PhysMem({0: low, 0x100000: high})
    assert phys.describe(0x100010) == "slot 1 + 0x10" and phys.describe(0x20000) == "no memslot (MMIO)"


def test_without_paging_the_linear_address_is_the_physical_address(mem64):
    w = pw.walk(mem64, 0x1234, cr0=1, cr3=0)
    assert w.mode == "none" and w.gpa == 0x1234 and w.levels == []


def test_the_address_space_map_merges_contiguous_ranges_with_equal_permissions(mem64):
    put(mem64, 0x4000 + 8 * 3, 0xA000 | P)                 # continues the read-only PTE[2]
    ranges = pw.address_space_map(mem64, cr0=PG_PE, cr3=0x1000, cr4=PAE, efer=LONG_EFER | NXE)
    got = [(r.va, r.size, r.gpa, r.perms, r.pages) for r in ranges]
    assert got == [
        (0x1000, 0x1000, 0x8000, "rwx kernel", 1),
        (0x2000, 0x2000, 0x9000, "r-x kernel", 2),
        (0x200000, 2 << 20, 0x200000, "rwx kernel", 1),
        (0x40000000, 1 << 30, 0x40000000, "rw- user", 1),
        (0xFFFFFFFFC0000000, 1 << 30, 0x80000000, "rwx kernel", 1),
    ]


def test_the_32_bit_address_space_map_lists_4k_and_4m_pages(mem32):
    ranges = pw.address_space_map(mem32, cr0=PG_PE, cr3=0x1000, cr4=PSE)
    assert [(r.va, r.gpa, r.page_size) for r in ranges] == [
        (0x403000, 0x5000, 0x1000), (0x800000, 0x800000, 4 << 20), (0xC00000, 0x1_00C00000, 4 << 20)]


# ------------------------------------------------------------------ against KVM_TRANSLATE
def _hw_reason():
    from kvmlab.hw import unusable_reason
    return unusable_reason()


@pytest.mark.hw
def test_the_walker_agrees_with_kvm_translate_in_long_mode_on_hw():
    why = _hw_reason()
    if why:
        pytest.skip(why)
    from kvmlab.vmm import Machine
    with Machine(mode="long", memory=0x400000, gib=1, backend="hw") as m:
        # extra hand-made tables at 0x300000: PML4[1] -> PDPT -> PD -> PT with 4K pages,
        # a 2M page and a 1G page, plus holes; the Machine's own identity map stays in PML4[0].
        base = 0x300000
        m.write_phys(0x10000 + 8, struct.pack("<Q", base | P | RW))
        m.write_phys(base, struct.pack("<Q", (base + 0x1000) | P | RW))            # PDPT[0]
        m.write_phys(base + 0x1008, struct.pack("<Q", 0x40000000 | PS | P | RW))   # PDPT[1]: 1G
        m.write_phys(base + 0x1000 + 0x1000, struct.pack("<Q", (base + 0x3000) | P | RW))  # PD[0] -> PT
        m.write_phys(base + 0x2008, struct.pack("<Q", 0x200000 | PS | P))          # PD[1]: 2M
        m.write_phys(base + 0x3000 + 8 * 5, struct.pack("<Q", 0x7000 | P | RW))    # PT[5]
        addrs = [0x0, 0x1234, 0x3FFFFFFF, 0x40000000, 1 << 39, (1 << 39) + 0x5123, (1 << 39) + 0x6000,
                 (1 << 39) + 0x201000, (1 << 39) + 0x40000FFF, (1 << 39) + 0x80000000, 2 << 39,
                 0x0000800000000000, 0xFFFFFFFFFFFFF000]
        for va in addrs:
            t = m.vcpu.translate(va)
            w = pw.walk_vcpu(m.vcpu, va)
            assert w.ok == t.valid, (hex(va), str(w), t)
            if w.ok:
                assert w.gpa == t.physical_address, (hex(va), str(w), t)


# the same hand-built tables, loaded into a VM: the walker and KVM_TRANSLATE must agree
MODES = {   # name: (fixture, cr0, cr4, efer, addresses)
    "32-bit": ("mem32", PG_PE, 0, 0, [0x00403004, 0x00403FFF, 0x00404000, 0x0, 0x00812345, 0xFFFFF000]),
    "32-bit PSE": ("mem32", PG_PE, PSE, 0, [0x00403004, 0x00812345, 0x00BFFFFF, 0x00C00010, 0x01000000]),
    "PAE": ("mem_pae", PG_PE, PAE, NXE, [0x40005008, 0x40212345, 0x40000000, 0x80000000, 0xC0000000]),
    "4-level": ("mem64", PG_PE | WP, PAE, LONG_EFER | NXE,
                [0x1ABC, 0x2000, 0x3000, 0x345678, 0x40123456, 0xFFFFFFFFC0001000, 0x0000800000000000,
                 3 << 39, 0x7FFFFFFFF000]),
}


def _vm_with(kvm, mem, cr0, cr4, efer):
    vm = kvm.create_vm()
    vm.set_user_memory_region(0, 0, mem)
    vcpu = vm.create_vcpu(0)
    vcpu.set_cpuid2(kvm.get_supported_cpuid())     # NX and 1 GiB pages, as the host offers them
    s = vcpu.get_sregs()
    s.cr0, s.cr3, s.cr4, s.efer = cr0, 0x1000, cr4, efer
    if efer & 0x400:
        s.cs.l, s.cs.db = 1, 0
    vcpu.set_sregs(s)
    return vm, vcpu


@pytest.mark.parametrize("backend", ["sim", "hw"])
@pytest.mark.parametrize("mode", list(MODES))
def test_the_walker_agrees_with_kvm_translate_on_hand_built_tables(request, backend, mode):
    if backend == "hw":
        why = _hw_reason()
        if why:
            pytest.skip(why)
        if mode != "4-level":
            pytest.skip("KVM here runs paging only in long mode (reference §19)")
    try:
        kvm = kvmlab.open(backend)
    except kvmlab.BackendUnavailable as e:
        pytest.skip(str(e))
    fixture, cr0, cr4, efer, addrs = MODES[mode]
    mem = request.getfixturevalue(fixture)
    vm, vcpu = _vm_with(kvm, mem, cr0, cr4, efer)
    with vm:
        assert pw.paging_mode(cr0, cr4, efer) == mode.split()[0]
        for va in addrs:
            t = vcpu.translate(va)
            w = pw.walk_vcpu(vcpu, va)
            assert w.ok == t.valid, (hex(va), str(w), t)
            if w.ok:
                assert w.gpa == t.physical_address, (hex(va), str(w), t)


def test_without_1g_page_support_ps_in_a_pdpte_is_a_reserved_bit(mem64):
    w = walk64(mem64, 0x40000000, gbpages=False, nxe=NXE)
    assert w.fault.error_code == pw.PF_P | pw.PF_RSVD and "1 GiB" in w.fault.reason


def test_a_vcpu_without_cpuid_has_no_1g_pages_for_the_walker():
    vm = kvmlab.open("auto").create_vm()
    with vm:
        vcpu = vm.create_vcpu(0)
        assert pw.guest_has_gbpages(vcpu) is False


def test_the_simulator_treats_ps_in_a_pdpte_as_reserved_without_1g_pages_in_cpuid(mem64):
    try:
        kvm = kvmlab.open("sim")
    except kvmlab.BackendUnavailable as e:
        pytest.skip(str(e))
    vm, vcpu = _vm_with(kvm, mem64, PG_PE | WP, PAE, LONG_EFER | NXE)
    with vm:
        if pw.guest_has_gbpages(vcpu):
            pytest.skip("the sim's CPUID now offers 1 GiB pages")
        assert not vcpu.translate(0x40123456).valid


def test_a_5_level_walk_starts_at_the_pml5(mem64):
    put(mem64, 0x6000 + 8 * 1, 0x1000 | P | RW)               # PML5[1] -> the PML4 at 0x1000
    va = (1 << 48) | 0x1ABC                                    # canonical with 57 bits
    w = pw.walk(mem64, va, cr0=PG_PE, cr3=0x6000, cr4=PAE | pw.CR4_LA57, efer=LONG_EFER)
    assert w.mode == "5-level" and w.gpa == 0x8ABC
    assert [lv.name for lv in w.levels] == ["PML5E", "PML4E", "PDPTE", "PDE", "PTE"]
    assert pw.walk(mem64, 1 << 57, cr0=PG_PE, cr3=0x6000, cr4=PAE | pw.CR4_LA57, efer=LONG_EFER).fault.vector == 13


# ------------------------------------------------------------------ random tables, KVM as the oracle
RANDOM_MODES = {"32-bit": (PG_PE, PSE, 0, 4, [22, 12]), "PAE": (PG_PE, PAE, NXE, 8, [30, 21, 12]),
                "4-level": (PG_PE | WP, PAE, LONG_EFER | NXE, 8, [39, 30, 21, 12])}


def random_tables(rng, mem, mode):
    """16 tables (pages 1-16) whose first 8 entries point at random pages (some outside RAM)
    with random flags, PS, NX and, rarely, address bits above MAXPHYADDR."""
    esize = RANDOM_MODES[mode][3]
    pages = mem.size // 4096
    for t in range(1, 17):
        for i in range(8):
            if rng.random() < 0.3:
                continue
            e = rng.randrange(0, pages + 8) * 4096 | (P if rng.random() < 0.85 else 0)
            if not (mode == "PAE" and t == 1):            # PAE PDPTEs: P and an address only
                for f in (RW, US, A, D, G):
                    e |= f if rng.random() < 0.5 else 0
                e |= PS if rng.random() < 0.25 else 0
                if esize == 8:
                    e |= NX if rng.random() < 0.3 else 0
                    e |= (1 << rng.choice((48, 50, 51))) if rng.random() < 0.05 else 0
            mem.write(t * 4096 + i * esize, e.to_bytes(esize, "little"))


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("backend", ["sim", "hw"])
@pytest.mark.parametrize("mode", list(RANDOM_MODES))
def test_the_walker_agrees_with_kvm_translate_on_random_page_tables(backend, mode, seed):
    import random
    if backend == "hw":
        why = _hw_reason()
        if why:
            pytest.skip(why)
        if mode != "4-level":
            pytest.skip("KVM here runs paging only in long mode (reference §19)")
    try:
        kvm = kvmlab.open(backend)
    except kvmlab.BackendUnavailable as e:
        pytest.skip(str(e))
    rng = random.Random(seed)
    mem = kvmlab.GuestMemory(0x20000)
    random_tables(rng, mem, mode)
    cr0, cr4, efer, _, shifts = RANDOM_MODES[mode]
    vm, vcpu = _vm_with(kvm, mem, cr0, cr4, efer)
    with vm:
        for _ in range(200):
            va = sum(rng.randrange(0, 8 if sh < 30 or mode == "4-level" else 4) << sh for sh in shifts)
            va |= rng.randrange(0, 4096)
            w = pw.walk_vcpu(vcpu, va)
            t = vcpu.translate(va)
            assert w.ok == t.valid, (hex(va), str(w), t)
            if w.ok:
                assert w.gpa == t.physical_address, (hex(va), str(w), t)


def test_the_simulator_treats_bits_13_to_20_of_a_pae_2m_pde_as_reserved(mem_pae):
    try:
        kvm = kvmlab.open("sim")
    except kvmlab.BackendUnavailable as e:
        pytest.skip(str(e))
    put(mem_pae, 0x2000 + 8 * 2, 0x600000 | 0x8000 | PS | P)    # bit 15 set in a 2 MiB PDE
    vm, vcpu = _vm_with(kvm, mem_pae, PG_PE, PAE, 0)
    with vm:
        assert not pw.walk_vcpu(vcpu, 0x40400000).ok
        assert not vcpu.translate(0x40400000).valid


# ------------------------------------------------------------------ reserved bits (MAXPHYADDR, PSE-36)
def test_a_pse_36_pde_beyond_maxphyaddr_has_reserved_address_bits(mem32):
    # PDE[3] has bit 13 (PA bit 32): fine with MAXPHYADDR 36 .. 52; bit 17 (PA bit 36) is not
    assert pw.walk(mem32, 0x00C00010, cr0=PG_PE, cr3=0x1000, cr4=PSE, maxphyaddr=36).ok
    put(mem32, 0x1000 + 4 * 3, 0x00C00000 | (1 << 17) | PS | P, 4)
    w = pw.walk(mem32, 0x00C00010, cr0=PG_PE, cr3=0x1000, cr4=PSE, maxphyaddr=36)
    assert w.fault.error_code == pw.PF_P | pw.PF_RSVD and "17-21" in w.fault.reason
    assert pw.walk(mem32, 0x00C00010, cr0=PG_PE, cr3=0x1000, cr4=PSE, maxphyaddr=40).ok
    put(mem32, 0x1000 + 4 * 3, 0x00C00000 | (1 << 21) | PS | P, 4)
    assert pw.walk(mem32, 0x00C00010, cr0=PG_PE, cr3=0x1000, cr4=PSE, maxphyaddr=48).fault.error_code == 9


@pytest.mark.parametrize("bit,ok", [(47, True), (48, False), (51, False), (52, False), (62, False)])
def test_pae_entries_reserve_bits_maxphyaddr_to_62(mem_pae, bit, ok):
    put(mem_pae, 0x3000 + 8 * 5, 0x6000 | P | US | (1 << bit))
    w = pw.walk(mem_pae, 0x40005008, cr0=PG_PE, cr3=0x1000, cr4=PAE, efer=NXE, maxphyaddr=48)
    assert w.ok == ok, str(w)


@pytest.mark.parametrize("bit,ok", [(47, True), (48, False), (51, False), (52, True), (62, True)])
def test_4_level_entries_reserve_bits_maxphyaddr_to_51(mem64, bit, ok):
    put(mem64, 0x4000 + 8 * 1, 0x8000 | P | RW | (1 << bit))
    assert walk64(mem64, 0x1ABC, maxphyaddr=48).ok == ok


@pytest.mark.parametrize("bit,ok", [(12, True), (13, False), (20, False), (21, True)])
def test_a_2m_page_entry_reserves_bits_13_to_20(mem64, bit, ok):
    put(mem64, 0x3000 + 8 * 1, 0x200000 | PS | P | RW | (1 << bit))
    w = walk64(mem64, 0x212345, maxphyaddr=48)
    assert w.ok == ok, str(w)
    if not ok:
        assert w.fault.error_code == pw.PF_P | pw.PF_RSVD
