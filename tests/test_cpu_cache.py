"""Where the compiled core is cached: keyed on the compiled sources, and usable from a
read-only install."""
import os
import re

from kvmlab.cpu import cachedir


def test_the_cache_key_covers_exactly_the_modules_with_compiled_code():
    here = os.path.dirname(cachedir.__file__)
    compiled = set()
    for name in os.listdir(here):
        if name.endswith('.py'):
            with open(os.path.join(here, name)) as f:
                src = f.read()
            if re.search(r'^@njit|^@intrinsic|@intrinsic\n|def njit', src, re.M) or name == 'layout.py' \
                    or name == 'optable.py':
                compiled.add(name)
    assert compiled == set(cachedir.COMPILED)


def test_the_cache_directory_is_named_after_the_source_hash():
    assert os.path.basename(cachedir.CACHE_DIR) == 'numba-' + cachedir.SOURCE_HASH
    assert re.fullmatch('[0-9a-f]{16}', cachedir.SOURCE_HASH)


def test_a_read_only_package_directory_falls_back_to_the_user_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv('KVMLAB_CACHE_DIR', raising=False)
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path))
    here = cachedir.HERE
    real = cachedir._writable
    monkeypatch.setattr(cachedir, '_writable', lambda p: False if p.startswith(here) else real(p))
    chosen = cachedir._choose()
    assert chosen == os.path.join(str(tmp_path), 'kvmlab', 'numba-' + cachedir.SOURCE_HASH)


def test_kvmlab_cache_dir_overrides_the_location(monkeypatch, tmp_path):
    monkeypatch.setenv('KVMLAB_CACHE_DIR', str(tmp_path))
    assert cachedir._choose() == os.path.join(str(tmp_path), 'numba-' + cachedir.SOURCE_HASH)
