"""Conformance: the hardware-recorded 80286 real-mode vectors (tests/data/sst286, filtered
for a modern CPU) all pass on kvmlab.cpu, form by form."""
import collections

import pytest

from tests.cpu_reference.sst286_runner import Runner, load_module, DATA, EXIT_HLT

_load = load_module()


@pytest.fixture(scope='module')
def by_form():
    import os
    forms = collections.OrderedDict()
    for t in _load.tests(os.path.join(DATA, 'sst286-modern.jsonl.gz')):
        forms.setdefault(t['form'], []).append(t)
    return forms


@pytest.fixture(scope='module')
def runner():
    return Runner()


def _forms():
    import gzip
    import json
    import os
    seen = []
    with gzip.open(os.path.join(DATA, 'sst286-modern.jsonl.gz'), 'rt') as f:
        for line in f:
            form = json.loads(line)['form']
            if form not in seen:
                seen.append(form)
    return seen


def test_the_vendored_file_holds_15600_tests_in_325_forms(by_form):
    assert len(by_form) == 325
    assert sum(len(v) for v in by_form.values()) == 15600


@pytest.mark.parametrize('form', _forms())
def test_every_vector_of_the_form_ends_in_the_recorded_state(form, by_form, runner):
    failures = []
    for t in by_form[form]:
        code, regs, read_byte = runner.run(t)
        bad = _load.check(t, regs, read_byte)
        if code != EXIT_HLT:
            bad.insert(0, 'ended with exit %d, not HLT' % code)
        if bad:
            failures.append('#%d %s: %s' % (t['idx'], t['name'], '; '.join(bad[:4])))
    assert not failures, '\n'.join(failures[:10])
