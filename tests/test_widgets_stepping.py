"""The stepper and the page-walk view on real guests: state after steps, text forms."""
import re

import pytest

from kvmlab import asm
from kvmlab.vmm import Machine
from kvmlab.widgets import PageWalk, Stepper

HOST = re.compile(r"0x0*7f[0-9a-f]{10}", re.I)


def clean(text):
    assert not HOST.search(text), text
    return text


@pytest.fixture
def hello64():
    m = Machine.from_file("guests/hello64.S", backend="auto")
    yield m
    m.close()


# ------------------------------------------------------------------ stepper
def test_a_step_executes_exactly_one_instruction(hello64):
    st = Stepper(hello64)
    assert st.step() == "single step" and st.rip == 0x1007
    assert st.step() == "single step" and st.rip == 0x1011          # the call
    text = clean(str(st))
    assert text.splitlines()[0] == "stepper vCPU 0: rip 0x1011 <puts>, stopped: single step"
    assert "=> 0x1011 <puts>: lodsb" in text


def test_stepping_over_an_in_completes_it_with_the_devices_value(hello64):
    st = Stepper(hello64)
    st.add_breakpoint(0x101C)                                       # in al, dx (the LSR poll)
    assert st.cont() == "breakpoint 0x101c <puts+0xb>"
    st.step()
    assert st.rip == 0x101D and hello64.vcpu.get_regs().rax & 0xFF == 0x60


def test_continue_stops_at_a_label_breakpoint_and_again_after_stepping_off_it(hello64):
    st = Stepper(hello64)
    st.add_breakpoint("puts")
    assert st.cont() == "breakpoint 0x1011 <puts>"
    assert st.cont() == "breakpoint 0x1011 <puts>"                  # next character
    assert hello64.console.text == "H"
    assert " * 0x1011 <puts>" not in str(st) and "=> 0x1011 <puts>" in str(st)


def test_continue_can_break_on_an_exit_reason(hello64):
    st = Stepper(hello64)
    st.break_on_exit("io")
    assert st.cont() == "exit IO"
    assert "break on exits: IO" in str(st)
    with pytest.raises(ValueError):
        st.break_on_exit("NOPE")


def test_an_unknown_label_is_refused_with_the_known_ones(hello64):
    with pytest.raises(KeyError, match="puts"):
        Stepper(hello64).add_breakpoint("nowhere")


def test_more_than_four_breakpoints_fall_back_to_single_stepping(hello64):
    st = Stepper(hello64)
    for a in (0x1100, 0x1101, 0x1102, 0x1103, 0x1016):
        st.add_breakpoint(a)
    assert st.cont() == "breakpoint 0x1016 <puts+0x5>"


def test_continue_without_breakpoints_runs_the_guest_to_its_end(hello64):
    st = Stepper(hello64)
    assert st.cont() == "debug_exit"
    assert hello64.console.text == "Hello from long mode!\n"


def test_the_stepper_widget_steps_on_a_click(hello64):
    st = Stepper(hello64)
    w = st.widget
    w.children[0].children[0].click()
    assert st.rip == 0x1007 and "=&gt; 0x1007" in st._out.value


# ------------------------------------------------------------------ page walk
def test_the_page_walk_follows_rip_and_agrees_with_kvm_translate(hello64):
    pw = PageWalk(hello64)
    text = clean(str(pw))
    assert text.splitlines()[0] == "page walk of 0x1000 (following RIP)"
    assert "KVM_TRANSLATE: 0x1000 -> 0x1000 (agrees with the walk)" in text
    assert "  32-bit   PD[31:22]=0x0 | PT[21:12]=0x1 | offset[11:0]=0x0" in text
    assert "address space (1 mapped ranges):" in text and "2048 x 2M" in text


def test_the_page_walk_steps_one_level_at_a_time(hello64):
    pw = PageWalk(hello64, va=0x1234, level=1)
    assert "... step 1 of 3: next the PDPTE" in str(pw) and "PDE   [" not in str(pw)
    pw.level = 3
    assert "PDE   [  0]" in str(pw) and "second stage: GPA 0x1234 -> slot 0 + 0x1234" in str(pw)


def test_the_page_walk_of_an_unmapped_address_shows_the_fault_and_kvm_agrees(hello64):
    pw = PageWalk(hello64, va=0x1_0000_0000, show_map=False)
    text = str(pw)
    assert "fault: #PF error code 0x0" in text and "PDPTE is not present" in text
    assert "KVM_TRANSLATE: 0x100000000 -> not mapped (agrees: no translation)" in text


def test_the_page_walk_follows_cr2_and_sees_accessed_and_dirty_bits_set_by_the_guest():
    with Machine.from_file("guests/paging.S", backend="auto") as m:
        m.run()
        pw = PageWalk(m, va=0xFFFF800000000000)
        text = clean(str(pw))
        assert "PTE   [  0] @ 0x106000 = 0x0000000000111063  P R/W A D" in text
        assert "0xffff800000000000-0xffff800000000fff -> GPA 0x111000  rwx kernel  1 x 4K" in text
        pw.goto(follow="cr2")
        assert str(pw).startswith("page walk of 0x0 (following CR2")


def test_the_page_walk_widget_walks_a_typed_address(hello64):
    pw = PageWalk(hello64)
    pw.widget
    pw._follow.value = None
    pw._va.value = "0x2345"
    assert pw.va == 0x2345 and "page walk of 0x2345" in pw._out.value


def test_the_stepper_refuses_to_step_a_vcpu_that_runs_in_the_background():
    with Machine(mode="real", backend="auto") as m:
        m.load(asm.assemble(".code16\n_start: jmp _start", base=0x1000))
        st = Stepper(m)
        h = m.start(timeout=None)
        try:
            with pytest.raises(RuntimeError, match="running in the background"):
                st.step()
        finally:
            h.stop()
        assert st.step() == "single step" and st.rip == 0x1000
