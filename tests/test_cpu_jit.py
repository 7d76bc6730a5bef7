"""How the core is compiled (kvmlab/cpu/jit.py): one specialisation per function, only
self-contained entry points in the disk cache, progress on a cold compile only, numba's
plain behaviour on versions the patch was not written for.  Each case compiles a small
part of the core (mmu.translate and what it calls) in a fresh process with its own cache."""
import json
import os
import subprocess
import sys

import numba
import pytest

from kvmlab.cpu import jit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROBE = r'''
import glob, json, os, sys
import numpy as np
from kvmlab.cpu import layout as L, jit, mmu, cachedir
st = np.zeros(L.STATE_SIZE, np.int64)
pm = np.zeros(L.PM_SIZE, np.int64)
st[L.CR0] = 1
# walk: called from Python after translate compiled it as a part of translate, or first
st2 = np.zeros(L.STATE_SIZE, np.int64)
st2[L.CR0], st2[L.CR4], st2[L.EFER], st2[L.CR3] = 0x80000001, 0x20, 0x500, 0x1000
from kvmlab.cpu import PhysMap
phys = PhysMap()
mem = np.zeros(0x4000, np.uint8)
mem[0x1000:0x1008] = list((0x2003).to_bytes(8, 'little'))        # PML4[0] -> 0x2000, PDPT all zero
phys.set_slot(0, 0, mem)
walk_first = os.environ.get('PROBE_WALK_FIRST') == '1'
wres = None
if walk_first:
    wres = [int(x) for x in mmu.walk(st2, phys.pm, 0x12345678, 0, 1)]
res = [int(x) for x in mmu.translate(st, pm, 0x12345678)]
if not walk_first and os.environ.get('PROBE_NO_WALK') != '1':
    wres = [int(x) for x in mmu.walk(st2, phys.pm, 0x12345678, 0, 1)]
print(json.dumps(dict(
    result=res,
    walk=wres,
    accessed=int(mem[0x1000]),
    whole=jit.WHOLE_PROGRAM,
    overloads={d.py_func.__name__: len(d.overloads) for d in jit.DISPATCHERS if d.overloads},
    hits=sum(mmu.translate._cache_hits.values()),
    cached=sorted(os.path.basename(p).split('-')[0] for p in glob.glob(os.path.join(cachedir.CACHE_DIR, '*.nbi'))),
)))
'''


def probe(cache, **env):
    e = dict(os.environ, KVMLAB_CACHE_DIR=str(cache), PYTHONPATH=ROOT)
    e.pop('KVMLAB_BOUNDSCHECK', None)
    e.pop('NUMBA_BOUNDSCHECK', None)
    e.update(env)
    p = subprocess.run([sys.executable, '-c', PROBE], env=e, cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1]), p.stderr


@pytest.mark.skipif(not jit.WHOLE_PROGRAM, reason='numba version without the whole-program patch')
def test_cold_then_warm_compile_of_an_entry_point(tmp_path):
    cold, err = probe(tmp_path)
    assert cold['whole']
    assert cold['result'] == [1, 0x12345678]
    # calls with constant arguments did not make extra specialisations
    assert len(cold['overloads']) >= 8 and set(cold['overloads'].values()) == {1}
    assert 'mmu.translate' in cold['cached']
    assert 'compiled' in err and 'functions' in err
    # walk, compiled only as a part of translate (no machine code of its own), runs from
    # Python too: that call compiles it as an entry point of its own, which is cached
    assert cold['walk'][0] == -1 and cold['accessed'] == 0x23
    assert 'mmu.walk' in cold['cached']
    # not called from Python: only the entry point is cached, walk is a part of it
    only, _ = probe(tmp_path / 'only', PROBE_NO_WALK='1')
    assert only['result'] == cold['result']
    assert 'mmu.translate' in only['cached'] and 'mmu.walk' not in only['cached']
    warm, err = probe(tmp_path, PROBE_NO_WALK='1')
    assert warm['result'] == cold['result']
    assert warm['hits'] == 1
    assert warm['overloads'] == {'translate': 1}          # loaded alone, nothing compiled
    assert err == ''                                      # and nothing said
    # walk compiled from Python first: an entry point of its own, same answer
    first, _ = probe(tmp_path / 'w', PROBE_WALK_FIRST='1')
    assert first['walk'] == cold['walk'] and first['accessed'] == 0x23
    assert 'mmu.walk' in first['cached']


def test_plain_numba_behaviour_when_switched_off(tmp_path):
    plain, _ = probe(tmp_path, KVMLAB_WHOLE_PROGRAM='0')
    assert not plain['whole']
    assert plain['result'] == [1, 0x12345678]
    assert set(plain['overloads'].values()) == {1}
    assert 'mmu.walk' in plain['cached']                  # every library is self-contained


def test_the_patch_is_only_installed_for_the_numba_version_it_was_written_for(monkeypatch):
    monkeypatch.delenv('KVMLAB_WHOLE_PROGRAM', raising=False)
    monkeypatch.setattr(numba, '__version__', '0.99.0')
    assert not jit._whole_program_supported()
    monkeypatch.setattr(numba, '__version__', '0.68.1')
    assert jit._whole_program_supported()
    monkeypatch.setenv('KVMLAB_WHOLE_PROGRAM', '0')
    assert not jit._whole_program_supported()


OUTSIDE = r'''
import numba
from kvmlab.cpu import mmu


@numba.njit(cache=True)
def outer(st, pm, lin):
    return mmu.walk(st, pm, lin, 0, 1)
'''

PROBE_OUTSIDE = r'''
import json, os, sys
import numpy as np
sys.path.insert(0, os.environ['PROBE_DIR'])
from kvmlab.cpu import layout as L, mmu, PhysMap
import outside
st = np.zeros(L.STATE_SIZE, np.int64)
if os.environ.get('PROBE_TRANSLATE_FIRST') == '1':
    mmu.translate(st, np.zeros(L.PM_SIZE, np.int64), 0)      # compiles walk as a part of translate
st[L.CR0], st[L.CR4], st[L.EFER], st[L.CR3] = 0x80000001, 0x20, 0x500, 0x1000
phys = PhysMap()
mem = np.zeros(0x4000, np.uint8)
mem[0x1000:0x1008] = list((0x2003).to_bytes(8, 'little'))
phys.set_slot(0, 0, mem)
print(json.dumps([int(x) for x in outside.outer(st, phys.pm, 0x12345678)] + [int(mem[0x1000])]))
'''


@pytest.mark.skipif(not jit.WHOLE_PROGRAM, reason='numba version without the whole-program patch')
def test_numba_code_outside_the_core_links_a_self_contained_copy(tmp_path):
    """A numba function outside the core (like the simulator's, which calls run) that calls
    a core function compiled only as a part of another entry point gets its whole call tree:
    its own disk cache entry then loads in a fresh process (an unresolved symbol there would
    abort the process)."""
    (tmp_path / 'outside.py').write_text(OUTSIDE)
    env = dict(os.environ, KVMLAB_CACHE_DIR=str(tmp_path / 'cache'), PYTHONPATH=ROOT, PROBE_DIR=str(tmp_path))
    env.pop('KVMLAB_BOUNDSCHECK', None)
    env.pop('NUMBA_BOUNDSCHECK', None)
    out = []
    for first in ('1', '0'):
        p = subprocess.run([sys.executable, '-c', PROBE_OUTSIDE], env=dict(env, PROBE_TRANSLATE_FIRST=first),
                           cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stderr
        out.append(json.loads(p.stdout.strip().splitlines()[-1]))
    assert out[0] == out[1] == [-1, 0, 0x23]
