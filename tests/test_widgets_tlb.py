"""The page-walk view's TLB panel: on the simulated backend it shows whether the selected
address is cached now (its entry, the physical page, W U X D G), the hit/miss counters,
the flushes by cause and the last one with the rip that did it; in the text form
(deterministic, host-free) and in the widget (a 16 x 16 grid of the entries).  On hw it says
why there is none.  The TLB itself is tested in tests/test_cpu_tlb.py."""
import re

import pytest

import kvmlab
from kvmlab import asm
from kvmlab.vmm import Machine
from kvmlab.widgets import PageWalk
from kvmlab.widgets.pagewalk import flush_counts, tlb_slot

HOST = re.compile(r"0x0*7f[0-9a-f]{10}", re.I)

# five phases, each ending with hlt (the next run resumes after it); code on page 0x1000
PHASES = r"""
.code64
_start:
    mov ecx, 100
1:  mov eax, [0x204000]
    add eax, [0x205000]
    add eax, [0x206000]
    add eax, [0x207000]
    loop 1b
    hlt
    mov rax, cr3
    mov cr3, rax
    mov eax, [0x204000]
    hlt
    invlpg [0x204000]
    hlt
    mov ecx, 100
2:  mov eax, [0x205000]
    add eax, [0x305000]
    loop 2b
    hlt
    or qword ptr [0x12000], 0x100
    mov rax, cr4
    or rax, 0x80
    mov cr4, rax
    mov dword ptr [0x206000], 1
    mov rax, cr3
    mov cr3, rax
    hlt
"""


@pytest.fixture(scope="module")
def sim():
    try:
        return kvmlab.open("sim")
    except kvmlab.BackendUnavailable as e:
        pytest.skip(str(e))


@pytest.fixture
def machine(sim):
    m = Machine(mode="long", gib=1, memory=4 << 20, kvm=sim)
    m.load(asm.assemble(PHASES, base=0x1000))
    yield m
    m.close()


def panel(m, va):
    return PageWalk(m, va=va, show_map=False).tlb_lines()


def test_the_entry_of_an_address_is_its_bits_19_to_12():
    assert [tlb_slot(va) for va in (0x0, 0x1fff, 0x204000, 0x304abc, 0xfffff000)] == [0, 1, 4, 4, 0xff]


def test_after_a_loop_over_four_pages_the_panel_shows_a_hit_with_the_entry_and_five_misses(machine):
    machine.run()
    lines = panel(machine, 0x205abc)
    assert lines[0].startswith("TLB of vCPU 0 (the simulated CPU's: 256 entries")
    assert lines[1] == ("  0x205abc: HIT in entry 5: page 0x205000 -> 0x205000  W - X - -  "
                        "(W U X D G = writable, user, executable, dirty, global)")
    m = re.fullmatch(r"  5 of 256 entries valid; lookups: (\d+) hits, 5 misses \((\d+\.\d)% hits\)", lines[2])
    assert m and int(m.group(1)) >= 396
    assert lines[3] == "  full flushes: 1 (memslot change 1); INVLPG (one page): 0"
    assert lines[4] == "  last flush: memslot change (at a guest entry, not by a guest instruction)"


def test_an_address_never_touched_is_a_miss_in_an_empty_entry(machine):
    machine.run()
    assert panel(machine, 0x3ff000)[1] == "  0x3ff000: MISS (entry 255 is empty): the next access walks the tables"


def test_a_mov_to_cr3_is_named_as_the_last_flush_with_the_rip_of_the_instruction(machine):
    machine.run()
    machine.run()
    lines = panel(machine, 0x205000)
    rip = 0x1000 + len(asm.assemble(PHASES.split("    mov cr3, rax")[0], base=0x1000).code)
    assert lines[4] == f"  last flush: MOV to CR3 by the instruction at rip {rip:#x}"
    assert lines[3] == "  full flushes: 2 (MOV to CR3 1, memslot change 1); INVLPG (one page): 0"
    assert "MISS (entry 5 is empty)" in lines[1]         # flushed, and not read again since
    assert "HIT in entry 4" in panel(machine, 0x204000)[1]


def test_invlpg_drops_one_page_and_is_counted_apart_from_the_full_flushes(machine):
    for _ in range(3):
        machine.run()
    t = machine.vm.kernel.vcpu_tlb(0)
    assert t.lookup(0x204000) is None and t.lookup(0x1000) is not None
    lines = panel(machine, 0x204000)
    assert lines[1] == "  0x204000: MISS (entry 4 is empty): the next access walks the tables"
    assert lines[3].endswith("; INVLPG (one page): 1")
    assert lines[4].startswith("  last flush: INVLPG (one page) by the instruction at rip 0x")


def test_two_pages_1_mib_apart_are_shown_evicting_each_other(machine):
    for _ in range(3):
        machine.run()
    before = machine.vm.kernel.vcpu_tlb(0).misses
    machine.run()
    assert machine.vm.kernel.vcpu_tlb(0).misses - before >= 199
    assert panel(machine, 0x205000)[1] == ("  0x205000: MISS: entry 5 holds page 0x305000 -> 0x305000 "
                                           "(same bits 19:12: the two evict each other)")


def test_a_global_page_survives_a_cr3_write_and_a_written_page_is_dirty(machine):
    for _ in range(5):
        machine.run()
    t = machine.vm.kernel.vcpu_tlb(0)
    assert [e.linear for e in t.entries] == [0x1000]
    assert panel(machine, 0x1000)[1].startswith("  0x1000: HIT in entry 1: page 0x1000 -> 0x1000  W - X - G")
    assert panel(machine, 0x206000)[1] == "  0x206000: MISS (entry 6 is empty): the next access walks the tables"
    assert panel(machine, 0x1000)[3] == ("  full flushes: 4 (MOV to CR3 2, CR4 paging bit change 1, memslot change 1); "
                                         "INVLPG (one page): 1")


def test_a_written_page_shows_d_in_its_entry(sim):
    with Machine(mode="long", gib=1, memory=4 << 20, kvm=sim) as m:
        m.load(asm.assemble(".code64\n_start: mov dword ptr [0x206000], 1\n hlt\n", base=0x1000))
        m.run()
        assert "page 0x206000 -> 0x206000  W - X D -" in panel(m, 0x206000)[1]


def test_the_flush_counts_add_up_and_no_efer_write_is_counted_where_the_guest_made_none(machine):
    machine.run()
    t = machine.vm.kernel.vcpu_tlb(0)
    assert flush_counts(t) == {"MOV to CR3": 0, "CR0.PG/WP/PE change": 0, "CR4 paging bit change": 0,
                               "EFER write": 0, "memslot change": 1}
    for _ in range(4):
        machine.run()
    t = machine.vm.kernel.vcpu_tlb(0)
    assert sum(flush_counts(t).values()) == t.flushes == 4


def test_the_text_form_is_the_same_for_the_same_run_and_free_of_host_addresses(sim):
    texts = []
    for _ in range(2):
        with Machine(mode="long", gib=1, memory=4 << 20, kvm=sim) as m:
            m.load(asm.assemble(PHASES, base=0x1000))
            m.run()
            m.run()
            texts.append(str(PageWalk(m, va=0x204000)))
    assert texts[0] == texts[1]
    assert "TLB of vCPU 0" in texts[0] and not HOST.search(texts[0])
    assert texts[0].index("TLB of vCPU 0") < texts[0].index("address space (")   # before the map


def test_show_tlb_false_leaves_the_panel_out(machine):
    machine.run()
    assert "TLB" not in str(PageWalk(machine, va=0x204000, show_tlb=False))


def test_the_panel_follows_the_state_after_a_background_run(machine):
    pw = PageWalk(machine, va=0x205000, show_map=False)
    assert "MISS (entry 5 is empty)" in pw.tlb_lines()[1] and "lookups: 0 hits, 0 misses" in pw.tlb_lines()[2]
    machine.start().wait(timeout=600)
    pw.refresh()
    assert "HIT in entry 5" in pw.tlb_lines()[1]


def test_the_widget_shows_the_panel_and_frames_the_selected_entry_in_the_grid(machine):
    machine.run()
    pw = PageWalk(machine, va=0x205000)
    html = pw.widget.children[-1].value
    assert "TLB of vCPU 0" in html and ">HIT</span>" in html
    assert html.count("<td title=") == 256
    assert re.search(r'title="entry 5: 0x205000 -&gt; 0x205000  W - X - -" style="[^"]*outline: 3px solid #2e9e2e',
                     html)
    assert 'title="entry 200: empty"' in html
    pw.goto(0x305000)
    assert ">MISS</span>" in pw.widget.children[-1].value and "#d62728" in pw.widget.children[-1].value


def test_the_kernel_view_refuses_an_unknown_vcpu(machine):
    with pytest.raises(KeyError):
        machine.vm.kernel.vcpu_tlb(7)


@pytest.mark.hw
def test_on_hw_the_panel_says_a_real_tlb_cannot_be_read():
    try:
        m = Machine.from_file("guests/hello64.S", backend="hw")
    except kvmlab.BackendUnavailable as e:
        pytest.skip(str(e))
    with m:
        m.run()
        lines = PageWalk(m, show_map=False).tlb_lines()
    assert lines == ["TLB: not visible on the 'hw' backend: a real CPU's TLB cannot be read, not even by KVM "
                     "(kvmlab.open('sim') shows the simulated CPU's)"]
