"""Runs sst286 vectors (tests/data/sst286) on kvmlab.cpu: real mode, A20 on, 1 MiB + 64 KiB
of RAM, IN returns all ones, OUT discarded, stop after the first HLT."""
import importlib.util
import os

import numpy as np

from kvmlab.cpu import Core, PhysMap, EXIT_HLT, EXIT_IO, EXIT_MMIO
from kvmlab.cpu import layout as L

DATA = os.path.join(os.path.dirname(__file__), '..', 'data', 'sst286')


def load_module():
    spec = importlib.util.spec_from_file_location('sst286_load', os.path.join(DATA, 'load.py'))
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


REGS = ('ax', 'bx', 'cx', 'dx', 'si', 'di', 'sp', 'bp')
GPR = dict(ax=L.RAX, bx=L.RBX, cx=L.RCX, dx=L.RDX, si=L.RSI, di=L.RDI, sp=L.RSP, bp=L.RBP)
SEGS = dict(cs=L.CS, ds=L.DS, es=L.ES, ss=L.SS)


class Runner:
    def __init__(self):
        self.mem = np.zeros(0x110000, np.uint8)
        self.pm = PhysMap()
        self.pm.set_slot(0, 0, self.mem)
        self.core = Core(self.pm)
        self.core.x87_as_nop = True
        self.touched = []

    def run(self, t, max_exits=600):
        mem = self.mem
        for a in self.touched:
            mem[a] = 0
        core = self.core
        core.reset()
        core.x87_as_nop = True
        st = core.state
        ini = t['initial']
        addrs = []
        for a, v in ini['ram']:
            mem[a] = v
            addrs.append(a)
        r = ini['regs']
        for k in REGS:
            st[GPR[k]] = r[k]
        for k, i in SEGS.items():
            b = L.SEG + 4 * i
            st[b + L.SEL] = r[k]
            st[b + L.BASE] = r[k] << 4
            st[b + L.LIMIT] = 0xFFFF
            st[b + L.ATTR] = (0xB if k == 'cs' else 0x3) | L.A_S | L.A_P
        for s in (L.FS, L.GS):
            b = L.SEG + 4 * s
            st[b + L.SEL] = 0
            st[b + L.BASE] = 0
        st[L.RIP] = r['ip']
        st[L.RFLAGS] = r['flags']
        st[L.IDTR_BASE] = 0
        st[L.IDTR_LIMIT] = 0x3FF
        st[L.PM_GEN_SEEN] = -1
        code = None
        for _ in range(max_exits):
            code = core.run(1000)
            if code == EXIT_IO:
                io = core.exit.io
                if io['direction'] == 0:
                    core.complete_io(b'\xff' * (io['size'] * io['count']))
                continue
            if code == EXIT_MMIO and not core.exit.mmio['is_write']:
                core.complete_io(b'\xff' * core.exit.mmio['len'])
                continue
            break
        # remember every byte the test could have written
        self.touched = addrs + [a for a, _ in t['final']['ram']]
        regs = {k: int(st[GPR[k]]) & 0xFFFF for k in REGS}
        for k, i in SEGS.items():
            regs[k] = int(st[L.SEG + 4 * i + L.SEL]) & 0xFFFF
        regs['ip'] = int(st[L.RIP]) & 0xFFFF
        regs['flags'] = int(st[L.RFLAGS]) & 0xFFFF
        return code, regs, lambda a: int(mem[a])


def run_all(forms=None, limit_fail=20):
    load = load_module()
    rn = Runner()
    passed = failed = 0
    fails = {}
    for t in load.tests(os.path.join(DATA, 'sst286-modern.jsonl.gz'), forms):
        code, regs, rb = rn.run(t)
        bad = load.check(t, regs, rb)
        if code != EXIT_HLT:
            bad = ['exit %s %r' % (code, rn.core.exit)] + bad
        # stray writes: nothing else may change
        if bad:
            failed += 1
            fails.setdefault(t['form'], []).append((t['idx'], t['name'], bad))
        else:
            passed += 1
    return passed, failed, fails


if __name__ == '__main__':
    import sys
    forms = set(sys.argv[1:]) or None
    p, f, fails = run_all(forms)
    print('passed %d failed %d' % (p, f))
    for form, lst in sorted(fails.items()):
        print(form, len(lst), lst[0][1], lst[0][2][:4])
