"""Where the compiled core is cached.

numba's disk cache does not notice changes in other modules and bakes in global
constants, so the core's cache directory is keyed on a hash of all its sources (and
numba's version).  It lives in ``kvmlab/cpu/__pycache__/numba-<hash>`` when that is
writable, else in ``$KVMLAB_CACHE_DIR`` or the user cache dir
(``$XDG_CACHE_HOME/kvmlab/numba-<hash>``, default ``~/.cache``) -- so a read-only install
works.  Only functions defined in this package use this locator.
"""
import glob
import hashlib
import os
import sys
import tempfile

import numba
from numba.core import caching

HERE = os.path.dirname(os.path.abspath(__file__))


# the modules that hold compiled code (the cache key); the others (core.py, __init__.py,
# __main__.py, cachedir.py, disasm.py) can change without invalidating the cache
COMPILED = ('access.py', 'alu.py', 'blocks.py', 'decode.py', 'exceptions.py', 'exec_alu.py',
            'exec_ctrl.py', 'exec_data.py', 'exec_io.py', 'exec_sys.py', 'fastexec.py', 'hostptr.py',
            'jit.py', 'layout.py', 'mmu.py', 'optable.py', 'physmem.py', 'run.py', 'segments.py',
            'uops.py')


def source_hash():
    h = hashlib.sha256(numba.__version__.encode())
    h.update(sys.version.encode())
    h.update(os.environ.get('KVMLAB_BOUNDSCHECK', os.environ.get('NUMBA_BOUNDSCHECK', '')).encode())
    for name in sorted(COMPILED):
        h.update(name.encode())
        with open(os.path.join(HERE, name), 'rb') as f:
            h.update(f.read())
    return h.hexdigest()[:16]


SOURCE_HASH = source_hash()


def _writable(path):
    try:
        os.makedirs(path, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
        return True
    except OSError:
        return False


def _choose():
    name = 'numba-' + SOURCE_HASH
    env = os.environ.get('KVMLAB_CACHE_DIR')
    if env:
        return os.path.join(env, name)
    cand = os.path.join(HERE, '__pycache__', name)
    if _writable(cand):
        return cand
    base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
    user = os.path.join(base, 'kvmlab', name)
    if _writable(user):
        return user
    return os.path.join(tempfile.gettempdir(), 'kvmlab-%d' % os.getuid(), name)


CACHE_DIR = _choose()


def is_warm():
    """True when the cache directory already holds compiled code."""
    return bool(glob.glob(os.path.join(CACHE_DIR, '*.nbi')))


class _CoreCacheLocator(caching._CacheLocator):
    def __init__(self, py_func, py_file):
        self._path = CACHE_DIR

    def get_cache_path(self):
        return self._path

    def get_source_stamp(self):
        return SOURCE_HASH

    def get_disambiguator(self):
        return 'core'

    @classmethod
    def from_function(cls, py_func, py_file):
        if os.path.dirname(os.path.abspath(py_file)) != HERE:
            return None
        return cls(py_func, py_file)


if _CoreCacheLocator not in caching.CacheImpl._locator_classes:
    caching.CacheImpl._locator_classes.insert(0, _CoreCacheLocator)
