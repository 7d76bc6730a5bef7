"""#PF for reserved bits in the paging structures (error code RSVD|P, CR2), in long mode.

The access is made by CPL 3 code, which KVM here runs natively (reference §19; it walks the
guest's tables with KVM's shadow MMU, whose reserved-bit masks follow the guest's CPUID:
MAXPHYADDR from leaf 0x80000008, 1 GiB pages only where both the guest's CPUID and KVM offer
them).  A CPL 0 handler records the vector, error code, CR2 and the faulting RIP.
"""
import pytest

import cpl3
from kvmlab.vmm import pagewalk

PF, UD = 14, 6
P, W, U, RSVD, ID = 1, 2, 4, 8, 16

ACCESS = {
    "read": ("mov rdi, {va}\n acc: mov rax, [rdi]\n ud2", 0),
    "write": ("mov rdi, {va}\n acc: mov [rdi], al\n ud2", W),
    "fetch": ("mov rdi, {va}\n call rdi\n acc: ud2", ID),       # fetch faults report the target
}
PTE_VA, PAGE2M_VA, PAGE1G_VA = 0x100010, 0x200010, 0x40000010


def _entry(g, level):
    return {"pte": g.pte(PTE_VA), "pde": cpl3.PD // 8 + 1, "pdpte": cpl3.PDPT // 8 + 1,
            "pml4e": cpl3.PML4 // 8 + 1}[level]


def _run(kvm, vm, access, va, mutate, *, cpuid="supported", nxe=False):
    ents = cpl3.supported_cpuid(kvm) if cpuid == "supported" else cpuid
    src, _ = ACCESS[access]
    g = cpl3.Cpl3Guest(vm, src.format(va=va), cpuid=ents, efer_nxe=nxe)
    if access == "fetch":
        g.mem.write(va & ~0xF, b"\x0f\x0b" * 8)               # ud2 where the call lands
    mutate(g)
    exits = g.run()
    assert exits[-1] == ("HLT",), exits
    vec, err, cr2, rip, _ = g.outcome()
    return g, vec, err, cr2, rip


@pytest.mark.parametrize("access", ["read", "write", "fetch"])
def test_a_pte_address_bit_at_maxphyaddr_is_reserved(kvm, vm, access):
    m = cpl3.maxphyaddr(cpl3.supported_cpuid(kvm))

    def mutate(g):
        g.q[g.pte(PTE_VA)] |= 1 << m
    g, vec, err, cr2, rip = _run(kvm, vm, access, PTE_VA & ~0xFFF if access == "fetch" else PTE_VA,
                                 mutate, nxe=access == "fetch")
    va = PTE_VA & ~0xFFF if access == "fetch" else PTE_VA
    want_rip = va if access == "fetch" else g.sym("acc")
    assert (vec, err, cr2, rip) == (PF, P | U | RSVD | ACCESS[access][1], va, want_rip)


def test_bits_52_to_62_of_a_4_level_pte_are_ignored(kvm, vm):
    def mutate(g):
        g.q[g.pte(PTE_VA)] |= 0x7FF << 52
    g, vec, err, cr2, rip = _run(kvm, vm, "read", PTE_VA, mutate)
    assert (vec, rip) == (UD, g.sym("acc") + 3)


@pytest.mark.parametrize("cpuid", ["none", "leaf-36"])
def test_a_guest_maxphyaddr_of_36_makes_bit_40_reserved(kvm, vm, cpuid):
    if cpuid == "none":
        ents = None                      # no KVM_SET_CPUID2: MAXPHYADDR 36
    else:
        ents = cpl3.supported_cpuid(kvm)
        for e in ents:
            if e.function == 0x80000008:
                e.eax = (e.eax & ~0xFF) | 36

    def mutate(g):
        g.q[g.pte(PTE_VA)] |= 1 << 40
    g, vec, err, cr2, rip = _run(kvm, vm, "read", PTE_VA, mutate, cpuid=ents)
    assert (vec, err, cr2, rip) == (PF, P | U | RSVD, PTE_VA, g.sym("acc"))


@pytest.mark.parametrize("nxe,want", [(False, P | U | RSVD), (True, None)], ids=["nxe0", "nxe1"])
def test_nx_in_a_pte_is_reserved_only_without_efer_nxe(kvm, vm, nxe, want):
    def mutate(g):
        g.q[g.pte(PTE_VA)] |= 1 << 63
    g, vec, err, cr2, rip = _run(kvm, vm, "read", PTE_VA, mutate, nxe=nxe)
    if want is None:
        assert (vec, rip) == (UD, g.sym("acc") + 3)
    else:
        assert (vec, err, cr2, rip) == (PF, want, PTE_VA, g.sym("acc"))


@pytest.mark.parametrize("bit", [13, 16, 20])
@pytest.mark.parametrize("access", ["read", "write"])
def test_bits_13_to_20_of_a_2mib_page_entry_are_reserved(kvm, vm, bit, access):
    def mutate(g):
        g.q[_entry(g, "pde")] |= 1 << bit
    g, vec, err, cr2, rip = _run(kvm, vm, access, PAGE2M_VA, mutate)
    assert (vec, err, cr2, rip) == (PF, P | U | RSVD | ACCESS[access][1], PAGE2M_VA, g.sym("acc"))


def test_bit_12_of_a_2mib_page_entry_is_pat_not_reserved(kvm, vm):
    def mutate(g):
        g.q[_entry(g, "pde")] |= 1 << 12
    g, vec, err, cr2, rip = _run(kvm, vm, "read", PAGE2M_VA, mutate)
    assert (vec, rip) == (UD, g.sym("acc") + 3)


@pytest.mark.parametrize("extra", [0, 1 << 13, 1 << 29], ids=["clean", "bit13", "bit29"])
def test_a_1gib_page_is_reserved_without_gbpages_and_its_bits_13_to_29_always(kvm, vm, extra):
    def mutate(g):
        g.q[_entry(g, "pdpte")] = 0 | P | W | U | 0x80 | extra
    g, vec, err, cr2, rip = _run(kvm, vm, "read", PAGE1G_VA, mutate)
    if extra == 0 and pagewalk.guest_has_gbpages(g.vcpu):
        assert (vec, rip) == (UD, g.sym("acc") + 3)
    else:
        assert (vec, err, cr2, rip) == (PF, P | U | RSVD, PAGE1G_VA, g.sym("acc"))


def test_a_guest_cpuid_page1gb_bit_counts_only_where_kvm_supports_1gib_pages(kvm, vm):
    def mutate(g):
        g.q[_entry(g, "pdpte")] = 0 | P | W | U | 0x80
    supported = any(e.function == 0x80000001 and e.edx >> 26 & 1 for e in kvm.get_supported_cpuid())
    g, vec, err, cr2, rip = _run(kvm, vm, "read", PAGE1G_VA, mutate,
                                 cpuid=cpl3.supported_cpuid(kvm, gbpages=True))
    assert pagewalk.guest_has_gbpages(g.vcpu) == supported
    if supported:
        assert (vec, rip) == (UD, g.sym("acc") + 3)
    else:
        assert (vec, err, cr2, rip) == (PF, P | U | RSVD, PAGE1G_VA, g.sym("acc"))


def test_ps_in_a_pml4e_is_reserved(kvm, vm):
    va = (1 << 39) | 0x10
    g, vec, err, cr2, rip = _run(kvm, vm, "read", va,
                                 lambda g: g.q.__setitem__(_entry(g, "pml4e"), cpl3.PDPT | P | W | U | 0x80))
    assert (vec, err, cr2, rip) == (PF, P | U | RSVD, va, g.sym("acc"))


def test_the_walker_widget_reports_the_same_reserved_bit_fault(kvm, vm):
    m = cpl3.maxphyaddr(cpl3.supported_cpuid(kvm))
    g = cpl3.Cpl3Guest(vm, "ud2", cpuid=cpl3.supported_cpuid(kvm))
    g.q[g.pte(PTE_VA)] |= 1 << m
    g.q[_entry(g, "pde")] |= 1 << 14
    for va in (PTE_VA, PAGE2M_VA):
        w = pagewalk.walk_vcpu(g.vcpu, va, user=True)
        assert w.fault is not None and w.fault.error_code == P | U | RSVD, str(w)
        assert not g.vcpu.translate(va).valid
