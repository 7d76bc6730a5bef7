"""Reference §15: binary statistics (KVM_GET_STATS_FD), read at the byte level through the
backend protocol (ioctl + pread), and the counts after a known guest."""
import os
import struct

import pytest

import kvmlab
from kvmlab import uapi
from factkit import is_pvm, real_mode, run

VM_STATS = ["remote_tlb_flush", "remote_tlb_flush_requests", "mmu_shadow_zapped", "mmu_pte_write",
            "mmu_pde_zapped", "mmu_flooded", "mmu_recycled", "mmu_cache_miss", "mmu_unsync", "pages_4k",
            "pages_2m", "pages_1g", "nx_lpage_splits", "max_mmu_rmap_size", "max_mmu_page_hash_collisions"]
VCPU_STATS = ["halt_successful_poll", "halt_attempted_poll", "halt_poll_invalid", "halt_wakeup",
              "halt_poll_success_ns", "halt_poll_fail_ns", "halt_wait_ns", "halt_poll_success_hist",
              "halt_poll_fail_hist", "halt_wait_hist", "blocking", "pf_taken", "pf_fixed", "pf_emulate",
              "pf_spurious", "pf_fast", "pf_mmio_spte_created", "pf_guest", "tlb_flush", "invlpg", "exits",
              "io_exits", "mmio_exits", "signal_exits", "irq_window_exits", "nmi_window_exits", "l1d_flush",
              "halt_exits", "request_irq_exits", "irq_exits", "host_state_reload", "fpu_reload",
              "insn_emulation", "insn_emulation_fail", "hypercalls", "irq_injections", "nmi_injections",
              "req_event", "nested_run", "directed_yield_attempted", "directed_yield_successful",
              "preemption_reported", "preemption_other", "guest_mode", "notify_window_exits"]


class RawStats:
    """The stats fd decoded by hand from its bytes (header, id, descriptors, data)."""

    def __init__(self, kvm, fd):
        self.kvm, self.fd = kvm, fd
        self.header = struct.unpack("<6I", kvm.backend.pread(fd, 24, 0))
        (self.flags, self.name_size, self.num_desc, self.id_offset, self.desc_offset,
         self.data_offset) = self.header
        self.id = kvm.backend.pread(fd, self.name_size, self.id_offset).split(b"\0")[0].decode()
        rec = 16 + self.name_size
        raw = kvm.backend.pread(fd, rec * self.num_desc, self.desc_offset)
        self.desc = {}
        for i in range(self.num_desc):
            flags, exp, size, off, bsz = struct.unpack_from("<IhHII", raw, i * rec)
            name = raw[i * rec + 16:(i + 1) * rec].split(b"\0")[0].decode()
            self.desc[name] = dict(type=flags & 0xF, unit=(flags >> 4) & 0xF, base=(flags >> 8) & 0xF,
                                   exponent=exp, size=size, offset=off, bucket_size=bsz)
        self.order = list(self.desc)

    def value(self, name):
        d = self.desc[name]
        vals = struct.unpack(f"<{d['size']}Q", self.kvm.backend.pread(self.fd, 8 * d["size"],
                                                                      self.data_offset + d["offset"]))
        return vals[0] if d["size"] == 1 else list(vals)


@pytest.fixture
def vm_stats(kvm, vm):
    fd = kvm.backend.ioctl(vm.fd, uapi.KVM_GET_STATS_FD)
    yield RawStats(kvm, fd)
    kvm.backend.close(fd)


@pytest.fixture
def vcpu_stats(kvm, vm):
    v = vm.create_vcpu(0)
    fd = kvm.backend.ioctl(v.fd, uapi.KVM_GET_STATS_FD)
    yield RawStats(kvm, fd)
    kvm.backend.close(fd)


def test_the_header_puts_the_id_then_48_byte_names_then_the_data_block(vm_stats):
    s = vm_stats
    assert (s.flags, s.name_size, s.id_offset, s.desc_offset) == (0, 48, 24, 72)
    assert s.data_offset == s.desc_offset + (16 + 48) * s.num_desc


def test_the_vm_stats_id_is_kvm_dash_pid(vm_stats):
    assert vm_stats.id == f"kvm-{os.getpid()}"


def test_the_vcpu_stats_id_is_kvm_dash_pid_slash_vcpu_dash_id(vcpu_stats):
    assert vcpu_stats.id == f"kvm-{os.getpid()}/vcpu-0"


def test_the_vm_has_the_15_x86_vm_stats(vm_stats):
    assert sorted(vm_stats.order) == sorted(VM_STATS)


def test_the_vcpu_has_the_45_generic_and_x86_vcpu_stats(vcpu_stats):
    assert sorted(vcpu_stats.order) == sorted(VCPU_STATS)


def test_the_vcpu_data_block_follows_45_descriptors(vcpu_stats):
    assert vcpu_stats.data_offset == 24 + 48 + 64 * 45 == 2952


CUMULATIVE, INSTANT, PEAK, LOG_HIST = 0, 1, 2, 4
NONE, SECONDS, BOOLEAN = 0, 2, 4


@pytest.mark.parametrize("name,type_,unit,exponent,size", [
    ("exits", CUMULATIVE, NONE, 0, 1),
    ("halt_exits", CUMULATIVE, NONE, 0, 1),
    ("halt_wait_ns", CUMULATIVE, SECONDS, -9, 1),
    ("halt_wait_hist", LOG_HIST, SECONDS, -9, 32),
    ("blocking", INSTANT, BOOLEAN, 0, 1),
    ("guest_mode", INSTANT, BOOLEAN, 0, 1),
])
def test_vcpu_descriptors_encode_type_unit_base_and_exponent(vcpu_stats, name, type_, unit, exponent, size):
    d = vcpu_stats.desc[name]
    assert (d["type"], d["unit"], d["base"], d["exponent"], d["size"]) == (type_, unit, 0, exponent, size)


@pytest.mark.parametrize("name,type_", [("remote_tlb_flush", CUMULATIVE), ("mmu_unsync", INSTANT),
                                         ("pages_4k", INSTANT), ("max_mmu_rmap_size", PEAK)])
def test_vm_descriptors_have_the_reference_types(vm_stats, name, type_):
    d = vm_stats.desc[name]
    assert (d["type"], d["unit"], d["exponent"], d["size"]) == (type_, NONE, 0, 1)


def test_descriptors_are_not_sorted_by_offset(vm_stats):
    order = vm_stats.order
    assert order.index("max_mmu_rmap_size") < order.index("max_mmu_page_hash_collisions")
    assert vm_stats.desc["max_mmu_rmap_size"]["offset"] > vm_stats.desc["max_mmu_page_hash_collisions"]["offset"]


def test_the_api_decoder_agrees_with_the_raw_bytes(vm, vcpu_stats):
    decoded = vm.vcpus[0].stats()
    for name in ("exits", "halt_exits", "halt_wait_hist", "blocking"):
        assert decoded[name] == vcpu_stats.value(name)


KNOWN = """
    mov cx, 10
1:  out 0x80, al
    loop 1b
    mov ax, 0x9000
    mov es, ax
    mov byte ptr es:[0], 1
    hlt"""


def test_after_10_outs_an_mmio_write_and_a_hlt_the_exit_counters_add_up(kvm, vm):
    g = real_mode(vm, KNOWN)
    got = g.run_until(max_exits=20)
    assert [e[0] for e in got] == ["IO"] * 10 + ["MMIO", "HLT"]
    s = g.vcpu.stats()
    assert (s["mmio_exits"], s["halt_exits"], s["signal_exits"]) == (1, 1, 0)
    if is_pvm(kvm):
        assert s["exits"] == 12
        assert s["io_exits"] == 0     # [PVM] counts only hardware IO intercepts
    else:
        assert s["exits"] >= 12       # upstream also counts exits handled in the kernel (EPT/NPT faults, ...)
        assert s["io_exits"] == 10


def test_a_kick_counts_one_signal_exit(vm):
    g = real_mode(vm, "1: jmp 1b")
    assert run(g.vcpu, timeout=0.1, allow_timeout=True).reason == kvmlab.KVM_EXIT_INTR
    assert g.vcpu.stats()["signal_exits"] == 1
