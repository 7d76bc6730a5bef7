"""The benchmark harness measures what it says (tiny sizes: these are not timed tests)."""
import pytest

from kvmlab.bench import kvm_rows, loops, unicorn_ref
from kvmlab.hw import unusable_reason

HW = pytest.mark.skipif(unusable_reason() is not None, reason=str(unusable_reason()))


@pytest.mark.parametrize("mode", ["real", "protected", "long"])
@pytest.mark.parametrize("kind", ["tight", "alu+mem"])
def test_unicorn_runs_each_loop_to_the_out_with_ecx_at_zero(kind, mode):
    pytest.importorskip("unicorn")
    assert unicorn_ref.run_loop(kind, mode, 1000) > 0


def test_the_loop_instruction_count_is_iterations_times_body_plus_setup():
    assert loops.instructions("tight", 10) == 23
    assert loops.instructions("alu+mem", 10) == 63


@HW
def test_the_coalesced_benchmark_accounts_for_every_guest_write_on_hw():
    assert kvm_rows.coalesced_writes_per_s("hw", 500) > 0   # asserts writes == n inside


@HW
@pytest.mark.parametrize("mode", ["real", "protected", "long"])
def test_the_guest_loop_reaches_the_debug_exit_port_on_hw(mode):
    from kvmlab.bench.guest_loops import seconds
    assert seconds("hw", "tight", mode, 100) > 0


def test_the_core_round_trip_benchmark_runs_the_out_loop_on_the_core():
    from kvmlab.bench import core_rows
    assert core_rows.core_exits_per_s(100) > 0      # asserts the first run is an OUT exit


def test_the_start_up_benchmark_reports_seconds_measured_in_a_fresh_process():
    from kvmlab.bench import core_rows
    s = core_rows.first_instruction_s()
    assert 0 < s < 600


def test_the_bench_command_prints_the_core_rows(capsys):
    from kvmlab.bench.__main__ import main
    import kvmlab.bench.__main__ as m
    # a smoke run of the table's core rows only: the guest/KVM rows have their own tests
    m.MODES, m.KINDS = (), ()
    try:
        assert main(["--quick", "--backends", "sim"]) == 0
    finally:
        m.MODES, m.KINDS = ("real", "protected", "long"), ("tight", "alu+mem")
    out = capsys.readouterr().out
    assert "core exit round trips via Core.run()" in out
    assert "fresh process: import to 1st insn" in out
