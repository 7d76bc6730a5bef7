"""Reference §7: KVM_GET_SUPPORTED_CPUID, KVM_SET_CPUID2 / KVM_GET_CPUID2 and the guest's CPUID."""
import errno
import struct

import pytest

import kvmlab
from kvmlab import uapi
from factkit import is_pvm, real_mode, upstream_or_pvm


def _supported_raw(kvm, n):
    buf = uapi.kvm_cpuid2_with(n)
    buf.nent = n
    try:
        kvm.backend.ioctl(kvm.fd, uapi.KVM_GET_SUPPORTED_CPUID, buf)
    except OSError as e:
        return e.errno, buf.nent
    return 0, buf.nent


def test_get_supported_cpuid_with_too_small_a_buffer_fails_with_E2BIG_and_leaves_nent(kvm):
    assert _supported_raw(kvm, 1) == (errno.E2BIG, 1)


@pytest.mark.parametrize("n", [256, 1000])
def test_get_supported_cpuid_with_a_large_buffer_succeeds_and_rewrites_nent(kvm, n):
    assert _supported_raw(kvm, n) == (0, len(kvm.get_supported_cpuid()))


def _leaf(entries, function, index=0):
    for e in entries:
        if e.function == function and e.index == index:
            return e
    raise KeyError(hex(function))


def test_the_kvm_signature_leaf_says_kvmkvmkvm(kvm):
    e = _leaf(kvm.get_supported_cpuid(), 0x40000000)
    assert struct.pack("<III", e.ebx, e.ecx, e.edx) == b"KVMKVMKVM\0\0\0"
    assert e.eax >= 0x40000001


def test_leaf_7_and_any_leaf_0xd_entries_are_flagged_significant_index(kvm):
    entries = kvm.get_supported_cpuid()
    assert _leaf(entries, 7).flags & 1
    # leaf 0xD is listed where the CPU has XSAVE (it is here); wherever listed, it is indexed
    assert all(e.flags & 1 for e in entries if e.function in (7, 0xD))


CPUID_GUEST = """
    xor eax, eax
    cpuid
    mov [0x3000], eax
    mov [0x3004], ebx
    mov [0x3008], edx
    mov [0x300c], ecx
    mov eax, 1
    cpuid
    mov [0x3010], ebx
    hlt"""


def test_without_set_cpuid2_the_guest_cpuid_returns_zeros_without_an_exit(vm):
    g = real_mode(vm, CPUID_GUEST)
    g.mem.write(0x3000, b"\xff" * 20)
    assert g.run_until() == [("HLT",)]
    assert g.mem.read(0x3000, 20) == bytes(20)


def _set_cpuid_guest(kvm, vm, vcpu_id=0):
    from factkit import set_real_mode
    from kvmlab.asm import assemble
    mem = kvmlab.GuestMemory(0x10000)
    vm.set_user_memory_region(0, 0, mem)
    mem.write(0x1000, assemble(".code16\n" + CPUID_GUEST, base=0x1000).code)
    v = vm.create_vcpu(vcpu_id)
    entries = kvm.get_supported_cpuid()
    v.set_cpuid2(entries)
    set_real_mode(v, 0x1000)
    return mem, v, entries


def test_after_set_cpuid2_the_guest_sees_the_vendor_leaf_of_the_table(kvm, vm):
    from factkit import run_until
    mem, v, entries = _set_cpuid_guest(kvm, vm)
    assert run_until(v) == [("HLT",)]
    leaf0 = _leaf(entries, 0)
    assert mem.read(0x3000, 16) == struct.pack("<IIII", leaf0.eax, leaf0.ebx, leaf0.edx, leaf0.ecx)


def test_leaf_1_ebx_is_the_tables_value_kvm_does_not_insert_the_apic_id(kvm, vm):
    # reference §7 says "Leaf 1 ebx bits 31:24 = APIC id"; measured: for vCPU 5 the guest
    # sees the table's ebx unchanged: filling in the APIC id is the VMM's job.  (The
    # supported list itself carries the initial APIC id of whichever host CPU answered
    # KVM_GET_SUPPORTED_CPUID: 0 or 1 here.)
    from factkit import run_until
    mem, v, entries = _set_cpuid_guest(kvm, vm, vcpu_id=5)
    assert run_until(v) == [("HLT",)]
    stored = _leaf(v.get_cpuid2(), 1)
    assert int.from_bytes(mem.read(0x3010, 4), "little") == stored.ebx
    assert stored.ebx >> 24 == _leaf(entries, 1).ebx >> 24 != 5


def test_get_cpuid2_returns_the_table_that_was_set_upstream_and_a_host_merged_one_on_pvm(kvm, vm):
    v = vm.create_vcpu(0)
    entries = kvm.get_supported_cpuid()
    v.set_cpuid2(entries)
    got = v.get_cpuid2()
    assert [(e.function, e.index) for e in got] == [(e.function, e.index) for e in entries]
    same = [bytes(a) == bytes(b) for a, b in zip(entries, got)]
    if is_pvm(kvm):
        # [PVM] merges host features into the stored table (leaf 1 ecx, leaf 7, leaf 0xD here)
        assert not all(same)
        assert not same[[(e.function, e.index) for e in entries].index((1, 0))]
    else:
        assert all(same)


def test_get_cpuid2_with_too_small_a_buffer_fails_with_E2BIG(kvm, vm):
    v = vm.create_vcpu(0)
    v.set_cpuid2(kvm.get_supported_cpuid())
    with pytest.raises(kvmlab.KvmError) as e:
        v.get_cpuid2(max_entries=1)
    assert e.value.errno == errno.E2BIG


def test_set_cpuid2_after_the_first_run_fails_with_EINVAL_for_a_different_table(kvm, vm):
    g = real_mode(vm, "hlt")
    entries = kvm.get_supported_cpuid()
    g.vcpu.set_cpuid2(entries)
    g.run_until()
    with pytest.raises(kvmlab.KvmError) as e:
        g.vcpu.set_cpuid2(entries[:-1])
    assert e.value.errno == errno.EINVAL


def test_set_cpuid2_after_the_first_run_with_the_table_kvm_holds_succeeds(kvm, vm):
    g = real_mode(vm, "hlt")
    g.vcpu.set_cpuid2(kvm.get_supported_cpuid())
    g.run_until()
    g.vcpu.set_cpuid2(g.vcpu.get_cpuid2())


def test_set_cpuid2_after_the_first_run_with_the_table_first_set_succeeds_upstream_but_not_on_pvm(kvm, vm):
    # reference §7: "upstream returns 0 when the table is identical; here also EINVAL [PVM]".
    # Measured: PVM rejects the table userspace set because PVM rewrote its stored copy
    # (see the test above: KVM's own copy is accepted).
    g = real_mode(vm, "hlt")
    entries = kvm.get_supported_cpuid()
    g.vcpu.set_cpuid2(entries)
    g.run_until()
    try:
        g.vcpu.set_cpuid2(entries)
        err = 0
    except kvmlab.KvmError as e:
        err = e.errno
    assert err == upstream_or_pvm(kvm, upstream=0, pvm=errno.EINVAL)
