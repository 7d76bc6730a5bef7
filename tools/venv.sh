# Sourced by tools/lab.sh and tools/test.sh: make .venv hold kvmlab with the given extras.
# pip runs only when .venv is new or pyproject.toml changed since the last install, so a
# second start is instant and works offline.
ensure_venv() {  # ensure_venv EXTRAS  (e.g. "lab" or "lab,test")
    local extras=$1 py=${PYTHON:-python3}
    [ -x .venv/bin/python ] || "$py" -m venv .venv
    local stamp=".venv/.kvmlab-installed-$extras"
    local want
    want=$(sha256sum pyproject.toml | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[$extras]"
        echo "$want" > "$stamp"
    fi
}
