"""The one decorator of the core: ``@njit(cache=True, nogil=True)``, with bounds checking
switched on by ``KVMLAB_BOUNDSCHECK=1`` (or numba's own ``NUMBA_BOUNDSCHECK=1``).
The core never allocates, so it is compiled without the NRT (no reference counting of the
state arrays on every call).

Compile time: a call from one core function to another with a constant argument
(``raise_exc(st, GP, 0)``) would make numba compile a separate specialisation of the
callee -- and of everything it calls -- for every distinct constant (``Literal[int](13)``),
which more than doubled the number of compiled functions.  The core's dispatchers type
such calls with the plain argument types instead: one compiled version per function
(LLVM still propagates the constants where it inlines the callee).

Whole-program roots: numba finalises every compiled function as its own LLVM library and
links into it the optimised code of everything it calls, then optimises and emits machine
code for that whole closure again -- so each of the ~160 functions paid for its callees
(``run`` for the whole core, ``execute`` for almost all of it, ...): quadratic.  For the
core's functions (numba 0.68 only, see ``WHOLE_PROGRAM``) this is changed:

- a function compiled because another core function calls it is not optimised nor
  emitted at all: its library keeps its own unoptimised code for the roots that call it
  (its overload has no entry point callable from Python, see ``_LazyEntry``).  Such a
  library is not written to the disk cache (it is not self-contained).  Optimising and
  emitting each of them on its own cost about 10 s of a cold compile, for machine code
  nothing called;
- a function compiled from Python (an entry point: ``run``, ``translate``...) is a root: the
  not yet optimised code of its whole call tree is linked into it once, optimised once
  (LLVM inlines across the whole core as before) and emitted once.  This self-contained
  library is what the disk cache keeps and what a warm start loads.

A core function that Python (or numba code outside the core) calls after it was compiled
only as a part of a root is compiled again then, as a root of its own (front end of that
function only; its callees' code is reused) and cached.  Compiling the entry points first
still saves that (core._load_or_compile does).
``KVMLAB_WHOLE_PROGRAM=0`` gives numba's plain behaviour (every library self-contained).

Progress: a cold compile reports on stderr how many of the core's functions are done.

Inlined helpers of the fast path's hot loop come in two kinds.  ``njit_inline`` (the tiny
ones of the innermost loop: register access, lazy flags, branch targets) uses numba's
``inline='always'``: typed and lowered again at each call site, which costs compile time but
gives about 12% more speed in the tight loop than LLVM inlining a separately compiled copy
(measured side by side).  ``njit_linked_inline`` (the larger ones: effective address, TLB
lookup, ALU with lazy flags) is compiled once like any core function and marked
``alwaysinline`` where a root links it, so LLVM inlines it; numba's IR-level inlining of
those cost about 10 s of a cold compile.
"""
import os
import sys
import threading
import time

from . import cachedir  # noqa: F401  (installs the cache locator before any compilation)
import numba
import numpy
from numba.core import sigutils, types
from numba.core.caching import FunctionCache
from numba.core.registry import CPUDispatcher

#: ``st[ix(i)]``: an index as an unsigned integer.  numba then skips its negative-index
#: wraparound (a compare, a branch and a load of the array's length on every access with
#: a computed index: a fifth of the fast path's hot loop).  The core's indexes are never
#: negative; with bounds checking on, one that were would still be caught.
ix = numpy.uint64

_BC = os.environ.get('KVMLAB_BOUNDSCHECK', os.environ.get('NUMBA_BOUNDSCHECK', '')) == '1'

DISPATCHERS = []        # every function of the core, in definition order


class _Progress:
    """Counts the core functions compiled in this process (cache misses only, so a warm
    start prints nothing) and reports on stderr: one updating line on a terminal, else a
    line about every 10%."""

    def __init__(self):
        self.done = set()
        self.shown = 0
        self.t0 = None
        self.enabled = True

    def compiled(self, disp):
        if disp in self.done:
            return
        self.done.add(disp)
        if not self.enabled:
            return
        if self.t0 is None:
            self.t0 = time.time()
        n, total = len(self.done), max(len(DISPATCHERS), len(self.done))
        try:
            tty = sys.stderr.isatty()
        except (AttributeError, ValueError):
            tty = False
        if tty:
            sys.stderr.write('\rkvmlab.cpu: compiled %d/%d functions (%.0f s)   '
                             % (n, total, time.time() - self.t0))
            sys.stderr.flush()
            self.shown = n
        elif n == total or n - self.shown >= max(1, total // 10):
            print('kvmlab.cpu: compiled %d/%d functions (%.0f s)' % (n, total, time.time() - self.t0),
                  file=sys.stderr, flush=True)
            self.shown = n

    def end(self):
        """End the updating line (call after a cold compile)."""
        try:
            if self.done and sys.stderr.isatty():
                sys.stderr.write('\n')
                sys.stderr.flush()
        except (AttributeError, ValueError):
            pass


progress = _Progress()


class _LazyEntry:
    """The entry point of a core function compiled only as a part of a root (jit.py's
    docstring): it has no machine code of its own.  Not callable: a call from Python
    compiles the function again, as a root (CoreDispatcher.compile)."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return '<%s: compiled only as a part of an entry point>' % self.name


class CoreDispatcher(CPUDispatcher):
    """numba's CPU dispatcher; calls from other compiled functions are typed without
    literal arguments (one specialisation per function), and compilations are counted."""

    def get_call_template(self, args, kws):
        args = tuple(types.unliteral(a) for a in args)
        kws = {k: types.unliteral(v) for k, v in kws.items()}
        return super().get_call_template(args, kws)

    def add_overload(self, cres):
        if isinstance(cres.entry_point, _LazyEntry):    # callable from compiled code only
            self.overloads[tuple(cres.signature.args)] = cres
        else:
            super().add_overload(cres)

    def compile(self, sig):
        misses = sum(self._cache_misses.values())
        frames = _frames()
        if not frames:
            # called from Python (or from numba code outside the core): a function compiled
            # only as a part of a root has no entry point of its own; compile it as a root
            args = tuple(sigutils.normalize_signature(sig)[0])
            existing = self.overloads.get(args)
            if existing is not None and isinstance(existing.entry_point, _LazyEntry):
                del self.overloads[args]
        frames.append((self, not frames))      # a compilation not inside another core one: a root
        try:
            entry = super().compile(sig)
        finally:
            frames.pop()
        if sum(self._cache_misses.values()) != misses:
            progress.compiled(self)
        return entry


def njit(fn):
    if numba.config.DISABLE_JIT:
        return fn
    opts = dict(nopython=True, nogil=True, _nrt=False, boundscheck=True if _BC else None)
    disp = CoreDispatcher(py_func=fn, locals={}, targetoptions=opts)
    disp._cache = _CoreCache(fn)
    DISPATCHERS.append(disp)
    return disp


def njit_inline(fn):
    """Inlined at numba's IR level into each caller (typed and lowered again at every call
    site): only for the tiny helpers of the fast path's innermost loop, where it gives
    better code than LLVM's inlining of a separately compiled function (about 12% of the
    tight loop, measured)."""
    if numba.config.DISABLE_JIT:
        return fn
    opts = dict(nopython=True, nogil=True, _nrt=False, boundscheck=True if _BC else None,
                inline='always')
    disp = CoreDispatcher(py_func=fn, locals={}, targetoptions=opts)
    disp._cache = _CoreCache(fn)
    return disp


def njit_linked_inline(fn):
    """For the larger helpers of the fast path: compiled once like any core function and
    marked alwaysinline where a root links it (see _linkable), so LLVM inlines it into every
    caller without numba typing and lowering it again at each call site.  Without the
    whole-program roots it is ``njit_inline``."""
    if numba.config.DISABLE_JIT:
        return fn
    if not WHOLE_PROGRAM:
        return njit_inline(fn)
    disp = njit(fn)
    disp._kvm_inline = True
    return disp


# ---------------------------------------------------------------------------------------
# whole-program roots (see the module docstring)

_tls = threading.local()        # .frames: the core compilations in progress in this thread


def _frames():
    fr = getattr(_tls, 'frames', None)
    if fr is None:
        fr = _tls.frames = []
    return fr


def _whole_program_supported():
    """The patch below replaces CPUCodeLibrary.finalize and wraps CPUContext.get_executable
    as written for numba 0.68; any other version keeps numba's own behaviour."""
    if os.environ.get('KVMLAB_WHOLE_PROGRAM', '1') == '0':
        return False
    if not numba.__version__.startswith('0.68.'):
        return False
    from numba.core import codegen, cpu
    lib = codegen.CPUCodeLibrary
    return all(hasattr(lib, a) for a in ('finalize', '_optimize_final_module', '_finalize_final_module',
                                         '_get_module_for_linking', '_raise_if_finalized')) \
        and hasattr(cpu.CPUContext, 'get_executable')


def _linkable(raw, inline=None):
    """A copy of a library's own module fit to link into a root: its functions become
    linkonce_odr (as numba's _get_module_for_linking does), so they neither clash with the
    same function's own library in the JIT engine nor stay when inlined everywhere.  The
    function named *inline* (an njit_linked_inline helper) is marked alwaysinline."""
    import llvmlite.binding as ll
    mod = raw.clone()
    for fn in mod.functions:
        if not fn.is_declaration and fn.linkage == ll.Linkage.external:
            fn.linkage = 'linkonce_odr'
            if fn.name == inline:
                fn.add_function_attribute('alwaysinline')
    return mod


def _closure_modules(self):
    """The modules to link into *self* to make it self-contained: the own code of every core
    library it calls, directly or not, once each; other libraries as numba links them."""
    mods = []
    seen = {self}
    todo = list(self._linking_libraries)
    while todo:
        lib = todo.pop(0)
        if lib in seen:
            continue
        seen.add(lib)
        self._reload_init.update(lib._reload_init)
        raw = getattr(lib, '_kvm_raw', None)
        if raw is None:                         # not a core library, or loaded from the cache
            mods.append(lib._get_module_for_linking())
        else:
            mods.append(_linkable(raw, getattr(lib, '_kvm_inline', None)))
            todo.extend(lib._linking_libraries)
    return mods


def _core_finalize(self):
    from numba.core.codegen import require_global_compiler_lock
    require_global_compiler_lock()
    self._codegen._check_llvm_bugs()
    self._raise_if_finalized()
    self._kvm_raw = self._final_module.clone()      # own code only, not yet optimised as a whole
    if not self._kvm_root:
        # nothing to optimise or emit: a root links this raw code (see _LazyEntry)
        self._kvm_selfcontained = False
        self._finalized = True
        return
    mods = _closure_modules(self)
    self._kvm_selfcontained = True
    if len(mods) > 20 and progress.enabled and progress.done:
        print('kvmlab.cpu: optimising %d functions together...' % (len(mods) + 1),
              file=sys.stderr, flush=True)
    for mod in mods:
        self._final_module.link_in(mod, preserve=True)
    self._optimize_final_module()
    self._final_module.verify()
    self._finalize_final_module()


def _install_whole_program():
    from numba.core import codegen, cpu
    lib_cls = codegen.CPUCodeLibrary
    if getattr(lib_cls.finalize, '_kvmlab', False):
        return
    orig_finalize = lib_cls.finalize
    orig_get_executable = cpu.CPUContext.get_executable
    orig_get_module_for_linking = lib_cls._get_module_for_linking

    def finalize(self):
        if getattr(self, '_kvm_core', False):
            return _core_finalize(self)
        return orig_finalize(self)

    def get_module_for_linking(self):
        # a core library that is not self-contained, linked by code outside the core (the
        # simulator's own numba functions call run): give it the whole call tree
        if getattr(self, '_kvm_selfcontained', True) or self._shared_module is not None:
            return orig_get_module_for_linking(self)
        mod = _linkable(self._kvm_raw)
        for m in _closure_modules(self):
            mod.link_in(m, preserve=True)
        self._shared_module = mod
        return mod

    def get_executable(self, library, fndesc, env):
        frames = _frames()
        if frames and not hasattr(library, '_kvm_core') and not library._finalized:
            disp, root = frames[-1]
            py = disp.py_func
            if fndesc.modname == py.__module__ and fndesc.qualname == py.__qualname__:
                library._kvm_core = True
                library._kvm_root = root
                if getattr(disp, '_kvm_inline', False):
                    library._kvm_inline = fndesc.mangled_name
                if not root:
                    library.finalize()
                    return _LazyEntry(fndesc.qualname)
        return orig_get_executable(self, library, fndesc, env)

    orig_optimize_functions = lib_cls._optimize_functions

    def optimize_functions(self, ll_module):
        # numba runs its function passes on every module a library gets, before the module
        # passes; a core function's own code is optimised where it counts, as a part of a
        # root (the module passes there do the same work once, on the whole program)
        frames = _frames()
        if frames and frames[-1][0].py_func.__qualname__ == self.name:
            ll_module.data_layout = self._codegen._data_layout
            return
        return orig_optimize_functions(self, ll_module)

    finalize._kvmlab = True
    lib_cls.finalize = finalize
    lib_cls._optimize_functions = optimize_functions
    lib_cls._get_module_for_linking = get_module_for_linking
    cpu.CPUContext.get_executable = get_executable


WHOLE_PROGRAM = _whole_program_supported()
if WHOLE_PROGRAM:
    _install_whole_program()


class _CoreCache(FunctionCache):
    """Writes only self-contained libraries (roots) to the disk cache.  Loading one does not
    first initialise numba's typing and lowering registries (``target_context.refresh()``,
    which imports most of numba: about half a second of a warm start); a compilation still
    does that itself (numba 0.68; other versions load as numba does)."""

    def load_overload(self, sig, target_context):
        if not WHOLE_PROGRAM:
            return super().load_overload(sig, target_context)
        with self._guard_against_spurious_io_errors():
            return self._load_overload(sig, target_context)

    def save_overload(self, sig, cres):
        if getattr(cres.library, '_kvm_selfcontained', True):
            super().save_overload(sig, cres)
