"""KVM_EXIT_FAIL_ENTRY through the public API: the vendor's failure reason, and on the
simulated backend a sentence naming the broken VM-entry rule."""
import kvmlab
from kvmlab.vmm import Machine
from kvmlab.asm import assemble

HLT64 = assemble(".code64\n_start: hlt\n", base=0x1000)


def test_cs_l_and_cs_d_in_long_mode_fail_entry_on_vmx_with_reason_0x80000021_and_a_sentence():
    with Machine(mode="long", backend="sim") as m:   # the default flavour: intel (VMX)
        m.load(HLT64)
        s = m.vcpu.get_sregs()
        s.cs.db = 1                      # CS.L=1 and CS.D=1: reserved in long mode
        m.vcpu.set_sregs(s)
        e = m.vcpu.run()
    assert e.reason == kvmlab.KVM_EXIT_FAIL_ENTRY
    assert e.hardware_entry_failure_reason == 0x80000021   # VMX: bit 31 | invalid guest state
    assert "CS.L=1 and CS.D=1" in e.explanation


def test_the_amd_flavour_reports_vmexit_invalid_for_the_same_state():
    kvm = kvmlab.open("sim", vendor="amd")
    with Machine(mode="long", backend="sim") as m:   # build the long-mode state once ...
        m.load(HLT64)
        regs, sregs = m.vcpu.get_regs(), m.vcpu.get_sregs()
        mem = bytes(m.read_phys(0, 0x20000))
    vm = kvm.create_vm()
    ram = kvmlab.GuestMemory(2 << 20)
    ram.write(0, mem)
    vm.set_user_memory_region(0, 0, ram)
    vcpu = vm.create_vcpu(0)
    sregs.cs.db = 1
    vcpu.set_sregs(sregs)
    vcpu.set_regs(regs)
    e = vcpu.run()
    assert e.reason == kvmlab.KVM_EXIT_FAIL_ENTRY
    assert e.hardware_entry_failure_reason == 2**64 - 1
    assert "CS.L=1 and CS.D=1" in e.explanation
