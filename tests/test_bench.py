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
