"""Generated differential tests: random integer programs (tests/cpu_reference/proggen.py)
run on kvmlab.cpu and on unicorn in 16-, 32- and 64-bit code, single instructions with
random state (undefined flags masked) and straight-line and looping sequences.  The seed
is printed; replay one with KVMLAB_DIFF_SEED=<seed>."""
import os
import random

import pytest

from kvmlab.cpu import EXIT_HLT
from tests.cpu_reference.diff import Pair
from tests.cpu_reference.proggen import Gen

BASE_SEED = int(os.environ.get('KVMLAB_DIFF_SEED', random.randrange(1 << 30)))
N_SINGLE = int(os.environ.get('KVMLAB_DIFF_SINGLE', 600))
N_SEQ = int(os.environ.get('KVMLAB_DIFF_SEQ', 200))


@pytest.fixture(scope='module', params=[16, 32, 64])
def pair(request):
    return Pair(request.param)


def _check(pair, text, und, seed, failures):
    ccode, err, code = pair.run(text, seed)
    if err is not None:
        return 0          # unicorn raised (e.g. #DE): not comparable here
    diffs = pair.compare(und)
    if ccode != EXIT_HLT:
        diffs.insert(0, 'core exit %d' % ccode)
    if diffs:
        failures.append('seed %d bits %d: %s -> %s' % (seed, pair.bits, text.replace('\n', '; '), diffs))
    return 1


def test_single_instructions_match_unicorn_with_undefined_flags_masked(pair):
    print('seed', BASE_SEED)
    g = Gen(BASE_SEED + pair.bits, pair.bits)
    failures = []
    ran = 0
    for i in range(N_SINGLE):
        text, und = g.insn()
        ran += _check(pair, text, und, BASE_SEED + i, failures)
    assert not failures, '%d/%d differ (base seed %d):\n%s' % (len(failures), ran, BASE_SEED, '\n'.join(failures[:15]))
    assert ran > N_SINGLE * 0.9


@pytest.mark.parametrize('loop', [False, True], ids=['straight', 'looping'])
def test_random_programs_match_unicorn(pair, loop):
    print('seed', BASE_SEED)
    failures = []
    ran = 0
    for i in range(N_SEQ):
        seed = BASE_SEED * 7 + i + (1000000 if loop else 0)
        g = Gen(seed, pair.bits)
        prog = g.program(g.r.randrange(3, 25), loop=loop)
        text = '\n'.join(t for t, _ in prog)
        ran += _check(pair, text, 0, seed, failures)
    assert not failures, '%d/%d differ (base seed %d):\n%s' % (len(failures), ran, BASE_SEED, '\n'.join(failures[:10]))
