"""The simulated kernel's run loop: vendor flavours (exit codes, VM-entry checks, SHUTDOWN),
hypercalls, the in-kernel irqchip (LAPIC timer, INIT/SIPI, irqfd into a halted vCPU),
vCPU threads, the trace and ``vm.kernel``.  Facts shared with real KVM live in tests/facts."""
import os
import struct
import threading
import time

import pytest

import kvmlab
from kvmlab.asm import assemble

EXIT = kvmlab.KVM_EXIT_IO


def real_mode_vm(source, vendor="intel", irqchip=False, mem_size=0x80000, load=0x1000,
                 ivt=None, vcpus=1):
    """A VM with RAM at 0, vCPU 0 in real mode at ``load``; ``ivt`` maps a vector to the
    label of its handler."""
    kvm = kvmlab.open("sim", vendor=vendor)
    vm = kvm.create_vm()
    if irqchip:
        vm.create_irqchip()
    mem = kvmlab.GuestMemory(mem_size)
    vm.set_user_memory_region(0, 0, mem)
    prog = assemble(".code16\n" + source, base=load)
    mem.write(load, prog.code)
    for vec, label in (ivt or {}).items():
        mem.write(4 * vec, prog.symbols[label].to_bytes(2, "little") + b"\0\0")
    cpus = [vm.create_vcpu(i) for i in range(vcpus)]
    v = cpus[0]
    s = v.get_sregs()
    s.cs.base = s.cs.selector = 0
    v.set_sregs(s)
    v.set_regs(rip=prog.entry, rsp=0x8000, rflags=2)
    return kvm, vm, mem, cpus if vcpus > 1 else v, prog


@pytest.fixture(autouse=True, scope="module")
def warm_core():
    """Compile (or load from the cache) the CPU core before any timed run."""
    kvm, vm, mem, v, prog = real_mode_vm("hlt")
    v.run()


def run(vcpu, timeout=3.0):
    t = threading.Timer(timeout, vcpu.kick)
    t.start()
    try:
        return vcpu.run()
    finally:
        t.cancel()


# -- kvm_x86_ops flavours ---------------------------------------------------------------------
@pytest.mark.parametrize("vendor,io,hlt", [("intel", 30, 12), ("amd", 0x7B, 0x78)])
def test_every_exit_carries_the_hardware_exit_code_of_the_vendor_flavour(vendor, io, hlt):
    kvm, vm, mem, v, prog = real_mode_vm("out 0x80, al\n hlt", vendor=vendor)
    assert run(v).reason == EXIT and v.hardware_exit_code == io
    assert run(v).reason == kvmlab.KVM_EXIT_HLT and v.hardware_exit_code == hlt


def _long_mode_cs_l_and_d(v):
    s = v.get_sregs()
    s.cr0 = 0x80000011
    s.cr4 = 0x20
    s.efer = 0x500
    s.cs.l = 1
    s.cs.db = 1
    s.cs.type = 11
    v.set_sregs(s)


@pytest.mark.parametrize("vendor,reason", [("intel", 0x80000021), ("amd", 2 ** 64 - 1)])
def test_cs_l_and_cs_d_in_long_mode_fail_vm_entry_with_the_vendors_reason(vendor, reason):
    kvm, vm, mem, v, prog = real_mode_vm("hlt", vendor=vendor)
    _long_mode_cs_l_and_d(v)
    ex = run(v)
    assert ex.reason == kvmlab.KVM_EXIT_FAIL_ENTRY
    assert ex.hardware_entry_failure_reason == reason
    rule = kvm.backend.entry_failure_rule(v.fd)
    assert "CS.L=1 and CS.D=1 in long mode" in rule


def test_vmx_checks_segment_types_that_svm_does_not():
    for vendor, expect in (("intel", kvmlab.KVM_EXIT_FAIL_ENTRY), ("amd", kvmlab.KVM_EXIT_HLT)):
        kvm, vm, mem, v, prog = real_mode_vm("hlt", vendor=vendor)
        s = v.get_sregs()
        s.tr.type = 1                     # an available 16-bit TSS is not a valid TR
        v.set_sregs(s)
        assert run(v).reason == expect, vendor
        if vendor == "intel":
            assert "TR type 1" in kvm.backend.entry_failure_rule(v.fd)


def test_fixing_the_state_lets_the_vcpu_enter():
    kvm, vm, mem, v, prog = real_mode_vm("hlt")
    s = v.get_sregs()
    good = s.tr.type
    s.tr.type = 1
    v.set_sregs(s)
    assert run(v).reason == kvmlab.KVM_EXIT_FAIL_ENTRY
    s.tr.type = good
    v.set_sregs(s)
    assert run(v).reason == kvmlab.KVM_EXIT_HLT


TRIPLE = "lidt [idtr]\n int3\n hlt\nidtr: .word 0\n .long 0"


def test_vmx_keeps_the_state_on_shutdown_and_svm_init_resets_it():
    kvm, vm, mem, v, prog = real_mode_vm(TRIPLE, vendor="intel")
    assert run(v).reason == kvmlab.KVM_EXIT_SHUTDOWN
    assert v.get_regs().rip != 0xFFF0 and v.hardware_exit_code == 2     # TRIPLE_FAULT
    kvm, vm, mem, v, prog = real_mode_vm(TRIPLE, vendor="amd")
    assert run(v).reason == kvmlab.KVM_EXIT_SHUTDOWN
    r, s = v.get_regs(), v.get_sregs()
    assert (r.rip, s.cs.selector, s.cs.base) == (0xFFF0, 0xF000, 0xFFFF0000)
    assert v.hardware_exit_code == 0x7F                                  # SVM_EXIT_SHUTDOWN


def test_vmcall_is_a_hypercall_returning_minus_kvm_enosys_on_both_flavours():
    for vendor in ("intel", "amd"):
        kvm, vm, mem, v, prog = real_mode_vm("mov eax, 1\n vmcall\n hlt", vendor=vendor)
        assert run(v).reason == kvmlab.KVM_EXIT_HLT
        assert v.get_regs().rax == 2 ** 64 - 1000
        assert v.stats()["hypercalls"] == 1


# -- request_interrupt_window / KVM_INTERRUPT ---------------------------------------------------
def test_an_interrupt_window_request_exits_as_soon_as_if_is_set():
    kvm, vm, mem, v, prog = real_mode_vm("cli\n out 0x80, al\n sti\n nop\n nop\n hlt")
    assert run(v).reason == EXIT
    v.request_interrupt_window = 1
    ex = run(v)
    assert ex.reason == kvmlab.KVM_EXIT_IRQ_WINDOW_OPEN
    assert v.kvm_run.ready_for_interrupt_injection == 1 and v.kvm_run.if_flag == 1
    st = v.stats()
    assert st["irq_window_exits"] == 1 and st["request_irq_exits"] == 1


# -- the trace and vm.kernel ------------------------------------------------------------------------
def test_the_trace_records_entries_exits_with_hardware_codes_and_pio():
    kvm, vm, mem, v, prog = real_mode_vm("out 0x80, al\n hlt")
    vm.kernel.trace.enable()
    run(v)
    names = [e.name for e in vm.kernel.trace]
    assert names[:3] == ["kvm_entry", "kvm_exit", "kvm_pio"]
    ex = list(vm.kernel.trace)[1]
    assert ex.fields["hw_exit_code"] == 30 and ex.fields["reason"] == "IO_INSTRUCTION"
    assert "kvm_pio" in str(vm.kernel.trace)


def test_vm_kernel_is_a_live_read_only_struct_kvm_with_a_text_form():
    kvm, vm, mem, v, prog = real_mode_vm("hlt", irqchip=True)
    k = vm.kernel
    assert k.online_vcpus == 1 and k.users_count == 2 and k.bsp_vcpu_id == 0
    assert [r.dev.name for r in k.pio_bus] == ["i8259", "i8259", "i8259"]
    assert k.mmio_bus[0].addr == 0xFEC00000
    assert k in k.vm_list
    assert k.irq_routing[4][0].pin == 4
    with pytest.raises(AttributeError):
        k.memslots[0].npages = 1
    text = str(k)
    for word in ("memslots", "online_vcpus", "pio_bus", "mmio_bus", "irqfds", "ioeventfds",
                 "coalesced_mmio", "irq_routing", "stat", "users_count", "kvm->slots_lock"):
        assert word in text


# -- in-kernel irqchip ---------------------------------------------------------------------------
LAPIC_TIMER = """
start:
    mov ax, 0xFEE0
    mov fs, ax                          ; fs.base = 0xFEE00 (real mode: base = sel << 4)
    sti
    hlt
    jmp start
isr:
    out 0xEE, al
    iret
"""


def _lapic_guest(periodic):
    kvm, vm, mem, v, prog = real_mode_vm("""
    xor ax, ax
    mov ds, ax
    mov dword ptr [0x380], 2000000      ; TMICT: 2 ms, then wait
idle:
    hlt
    jmp idle
isr:
    mov al, 0x40
    out 0xEE, al
    mov dword ptr [0xB0], 0             ; EOI (ds.base = 0xFEE00000)
    iret
""", irqchip=True, ivt={0x40: "isr"})
    s = v.get_sregs()
    s.ds.base = 0xFEE00000
    v.set_sregs(s)
    v.set_regs(rip=prog.entry + 4, rsp=0x8000, rflags=0x202)   # skip the ds load, IF=1
    # program the LAPIC the way a guest would, through its MMIO page
    lapic = bytearray(1024)
    st = kvmlab.uapi.kvm_lapic_state()
    kvm.backend.ioctl(v.fd, kvmlab.KVM_GET_LAPIC, st)
    regs = bytearray(bytes(st))
    struct.pack_into("<I", regs, 0xF0, 0x1FF)                          # SVR: enable
    struct.pack_into("<I", regs, 0x320, 0x40 | ((1 << 17) if periodic else 0))
    struct.pack_into("<I", regs, 0x3E0, 0xB)                           # divide by 1
    kvm.backend.ioctl(v.fd, kvmlab.KVM_SET_LAPIC, regs)
    return kvm, vm, v


def test_the_lapic_timer_in_one_shot_mode_wakes_a_halted_vcpu_once():
    kvm, vm, v = _lapic_guest(periodic=False)
    t0 = time.monotonic()
    ex = run(v)
    assert ex.reason == EXIT and ex.port == 0xEE and ex.data == b"\x40"
    assert time.monotonic() - t0 >= 0.0015
    assert vm.kernel.vcpu_stat(0)["halt_exits"] == 1
    ex = run(v, timeout=0.3)                       # back in HLT: no second interrupt
    assert ex.reason == kvmlab.KVM_EXIT_INTR


def test_the_lapic_timer_in_periodic_mode_keeps_firing():
    kvm, vm, v = _lapic_guest(periodic=True)
    for _ in range(3):
        ex = run(v)
        assert ex.reason == EXIT and ex.data == b"\x40"


def test_an_irqfd_written_by_another_thread_wakes_a_vcpu_halted_in_kvm_run():
    kvm, vm, mem, v, prog = real_mode_vm("sti\nidle: hlt\n jmp idle\nisr:\n mov al, 4\n out 0xEE, al\n hlt",
                                         irqchip=True, ivt={4: "isr"})
    efd = os.eventfd(0)
    try:
        vm.irqfd(efd, 4)
        threading.Timer(0.2, os.eventfd_write, (efd, 1)).start()
        t0 = time.monotonic()
        ex = run(v)
        dt = time.monotonic() - t0
        assert ex.reason == EXIT and ex.port == 0xEE and ex.data == b"\x04"
        assert 0.15 < dt < 2.0
        assert v.stats()["halt_exits"] == 1 and v.stats()["halt_wakeup"] == 1
    finally:
        os.close(efd)


def test_init_sipi_brings_up_an_application_processor():
    bsp_src = """
    xor ax, ax
    mov ds, ax
    mov dword ptr [0x310], 0x01000000   ; ICR high: APIC id 1
    mov dword ptr [0x300], 0x00004500   ; INIT, level assert
    mov dword ptr [0x300], 0x00004602   ; STARTUP, vector 2 -> 0x2000
    hlt
"""
    kvm, vm, mem, (bsp, ap), prog = real_mode_vm(bsp_src, irqchip=True, vcpus=2)
    mem.write(0x2000, assemble(".code16\n mov al, 0xA5\n out 0x99, al\n hlt", base=0x2000).code)
    s = bsp.get_sregs()
    s.ds.base = 0xFEE00000
    bsp.set_sregs(s)
    bsp.set_regs(rip=prog.entry + 4, rsp=0x8000, rflags=2)
    st = kvmlab.uapi.kvm_mp_state()
    kvm.backend.ioctl(ap.fd, kvmlab.KVM_GET_MP_STATE, st)
    assert st.mp_state == kvmlab.KVM_MP_STATE_UNINITIALIZED
    result = {}

    def ap_thread():
        try:
            ex = run(ap)                         # VcpuFd.run retries KVM_RUN's EAGAIN (as QEMU)
        except kvmlab.KvmError as e:            # upstream: EAGAIN once INIT/SIPI arrived
            result["first"] = e.errno
            ex = run(ap)
        result["ex"] = ex
        result["port"] = getattr(ex, "port", None)
    t = threading.Thread(target=ap_thread)
    t.start()
    time.sleep(0.1)
    threading.Timer(0.5, bsp.kick).start()
    ex = bsp.run()                               # BSP sends INIT + SIPI, then halts in the kernel
    t.join(5)
    # the AP waits (in the kernel) for the SIPI after the INIT, then runs from vector 2
    assert result.get("first") in (None, 11) and result.get("port") == 0x99, result
    assert ap.get_sregs().cs.base == 0x2000


# -- vCPU threads -----------------------------------------------------------------------------------
def test_two_vcpus_run_in_their_own_threads_and_lock_inc_is_atomic_across_them():
    src = """
    mov ecx, 20000
1:  lock inc dword ptr [0x3000]
    dec ecx
    jnz 1b
    hlt
"""
    kvm, vm, mem, (a, b), prog = real_mode_vm(src, vcpus=2)
    s = b.get_sregs()
    s.cs.base = s.cs.selector = 0
    b.set_sregs(s)
    b.set_regs(rip=prog.entry, rsp=0x7000, rflags=2)
    out = {}
    ts = [threading.Thread(target=lambda c=c: out.setdefault(c.id, run(c, 20).reason))
          for c in (a, b)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert out == {0: kvmlab.KVM_EXIT_HLT, 1: kvmlab.KVM_EXIT_HLT}
    assert int.from_bytes(mem.read(0x3000, 4), "little") == 40000


def test_a_locked_rmw_on_mmio_with_two_vcpus_exits_for_the_read_and_the_write_without_holding_the_lock():
    # vCPU 0: lock inc word [0xa000] (ds=0x9000: gpa 0x9a000, above the 0x80000 of RAM)
    # vCPU 1: locked increments of RAM while vCPU 0's access waits in userspace
    src = """
    lock inc word ptr [0xa000]
    hlt
b:  mov cx, 100
1:  lock inc word ptr [0x3000]
    xchg [0x3002], ax
    loop 1b
    hlt
"""
    kvm, vm, mem, (a, b), prog = real_mode_vm(src, vcpus=2)
    s = a.get_sregs()
    s.ds.base, s.ds.selector = 0x90000, 0x9000
    a.set_sregs(s)
    s = b.get_sregs()
    s.cs.base = s.cs.selector = 0
    b.set_sregs(s)
    b.set_regs(rip=prog.symbols["b"], rsp=0x7000, rflags=2, rax=7)
    ex = run(a)
    assert ex.reason == kvmlab.KVM_EXIT_MMIO and not ex.is_write and ex.phys_addr == 0x9A000
    assert run(b).reason == kvmlab.KVM_EXIT_HLT          # no lock held across vCPU 0's exit
    assert int.from_bytes(mem.read(0x3000, 2), "little") == 100
    ex.complete(b"\x41\x00")
    ex = run(a)
    assert ex.reason == kvmlab.KVM_EXIT_MMIO and ex.is_write and ex.data == b"\x42\x00"
    assert run(a).reason == kvmlab.KVM_EXIT_HLT
    assert a.stats()["mmio_exits"] == 2 and a.stats()["exits"] == 3


def test_a_kick_from_another_thread_ends_a_spinning_guest_with_intr():
    kvm, vm, mem, v, prog = real_mode_vm("spin: jmp spin")
    threading.Timer(0.2, v.kick).start()
    ex = v.run()
    assert ex.reason == kvmlab.KVM_EXIT_INTR
    assert v.stats()["signal_exits"] == 1


def test_ctrl_c_while_the_guest_spins_raises_keyboardinterrupt_with_exit_intr():
    import _thread
    kvm, vm, mem, v, prog = real_mode_vm("spin: jmp spin")
    threading.Timer(0.2, _thread.interrupt_main).start()
    with pytest.raises(KeyboardInterrupt):
        v.run()
    assert v.kvm_run.exit_reason == kvmlab.KVM_EXIT_INTR


# -- deterministic mode ------------------------------------------------------------------------------
def _two_counters(deterministic):
    src = """
    mov ecx, 3000
1:  inc dword ptr [bx]
    dec ecx
    jnz 1b
    mov ax, [0x3000]
    mov dx, [0x3004]
    out 0x80, ax
    hlt
"""
    kvm, vm, mem, (a, b), prog = real_mode_vm(src, vcpus=2)
    if deterministic:
        kvm.backend.set_deterministic(vm.fd)
    a.set_regs(rip=prog.entry, rsp=0x8000, rflags=2, rbx=0x3000)
    s = b.get_sregs()
    s.cs.base = s.cs.selector = 0
    b.set_sregs(s)
    b.set_regs(rip=prog.entry, rsp=0x7000, rflags=2, rbx=0x3004)
    return kvm, vm, mem, a, b


def test_deterministic_mode_runs_every_vcpu_in_the_calling_thread_round_robin():
    kvm, vm, mem, a, b = _two_counters(True)
    ex = a.run()                     # vCPU 1 runs too, in this thread, 1000 instructions a turn
    assert ex.reason == EXIT
    seen_by_a = struct.unpack("<H", ex.data)[0]
    assert 0 < int.from_bytes(mem.read(0x3004, 4), "little") <= 3000
    ex_b = b.run()                   # its exit was parked while vCPU 0 ran
    assert ex_b.reason == EXIT
    assert a.run().reason == kvmlab.KVM_EXIT_HLT and b.run().reason == kvmlab.KVM_EXIT_HLT
    # and the interleaving is the same every time
    kvm2, vm2, mem2, a2, b2 = _two_counters(True)
    assert struct.unpack("<H", a2.run().data)[0] == seen_by_a


def test_without_deterministic_mode_a_vcpu_runs_only_in_its_own_kvm_run():
    kvm, vm, mem, a, b = _two_counters(False)
    assert a.run().reason == EXIT
    assert int.from_bytes(mem.read(0x3004, 4), "little") == 0


def test_the_in_kernel_pit_drives_irq0_through_the_programmed_pic_periodically():
    src = """
    mov al, 0x11
    out 0x20, al                        ; ICW1
    mov al, 0x20
    out 0x21, al                        ; ICW2: IRQ0 -> vector 0x20
    mov al, 4
    out 0x21, al                        ; ICW3
    mov al, 1
    out 0x21, al                        ; ICW4
    mov al, 0xFE
    out 0x21, al                        ; OCW1: only IRQ0
    mov al, 0x34
    out 0x43, al                        ; counter 0, lo/hi, mode 2 (rate generator)
    mov al, 0xA9
    out 0x40, al
    mov al, 0x04
    out 0x40, al                        ; 0x4A9 = 1193 ticks = 1 ms
    sti
idle:
    hlt
    jmp idle
isr:
    mov al, 0x20
    out 0xEE, al
    out 0x20, al                        ; EOI
    iret
"""
    kvm, vm, mem, v, prog = real_mode_vm(src, irqchip=True, ivt={0x20: "isr"})
    vm.create_pit2()
    t0 = time.monotonic()
    for _ in range(5):
        ex = run(v)
        assert (ex.reason, ex.port, ex.data) == (EXIT, 0xEE, b"\x20")
    assert time.monotonic() - t0 >= 0.004
    assert "i8254" in [r.dev.name for r in vm.kernel.pio_bus]
    st = v.stats()
    assert st["exits"] > 5 and st["irq_injections"] >= 5


def test_vcpu_stats_count_exits_by_kind_like_the_kernel():
    kvm, vm, mem, v, prog = real_mode_vm("""
    mov cx, 10
1:  out 0x80, al
    loop 1b
    mov ax, 0x9000
    mov es, ax
    mov byte ptr es:[0], 1
    hlt""", mem_size=0x80000)
    for _ in range(12):
        ex = run(v)
    assert ex.reason == kvmlab.KVM_EXIT_HLT
    st = v.stats()
    assert (st["exits"], st["io_exits"], st["mmio_exits"], st["halt_exits"]) == (12, 10, 1, 1)
    assert st["insn_emulation"] == 11 and st["signal_exits"] == 0


def test_a_signal_while_the_guest_spins_ends_kvm_run_with_eintr_and_exit_intr():
    import signal
    got = []
    old = signal.signal(signal.SIGALRM, lambda *a: got.append(1))
    try:
        kvm, vm, mem, v, prog = real_mode_vm("spin: jmp spin")
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        ex = run(v, timeout=5)
        assert ex.reason == kvmlab.KVM_EXIT_INTR and got == [1]
        assert v.stats()["signal_exits"] == 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_a_signal_while_the_vcpu_is_halted_in_the_kernel_ends_kvm_run_with_intr():
    import signal
    old = signal.signal(signal.SIGALRM, lambda *a: None)
    try:
        kvm, vm, mem, v, prog = real_mode_vm("idle: hlt\n jmp idle", irqchip=True)
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        t0 = time.monotonic()
        ex = run(v, timeout=5)
        assert ex.reason == kvmlab.KVM_EXIT_INTR and time.monotonic() - t0 < 2
        st = kvmlab.uapi.kvm_mp_state()
        kvm.backend.ioctl(v.fd, kvmlab.KVM_GET_MP_STATE, st)
        assert st.mp_state == kvmlab.KVM_MP_STATE_HALTED
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
