"""Guest-physical accesses through the memslot table (reference §3.3, §11).

RAM slot: plain load/store (and a dirty bit per written page).  READONLY slot: reads
served, writes become MMIO writes.  No slot: MMIO.  An MMIO read stops the instruction
with an MMIO exit and is replayed on the next entry with the data supplied; an MMIO
write is reported as an exit after the instruction completes, unless it falls fully
inside a coalesced zone and the ring has room.
"""
from .jit import njit, ix
from .layout import *  # noqa: F401,F403
from .hostptr import load8, load16, load32, load64, store8, store16, store32, store64


@njit
def find_slot(pm, gpa):
    """Index in pm of the slot holding gpa, or -1."""
    n = pm[PM_NSLOTS]
    for i in range(n):
        b = PM_SLOTS + i * PM_SLOT_FIELDS
        if pm[ix(b + PS_USED)] != 0:
            off = gpa - pm[ix(b + PS_GPA)]
            if off >= 0 and off < pm[ix(b + PS_SIZE)]:
                return b
    return -1


@njit
def host_load(addr, size):
    if size == 1:
        return load8(addr)
    if size == 2:
        return load16(addr)
    if size == 4:
        return load32(addr)
    if size == 8:
        return load64(addr)
    v = 0
    for i in range(size):
        v |= load8(addr + i) << (8 * i)
    return v


@njit
def host_store(addr, size, v):
    if size == 1:
        store8(addr, v)
    elif size == 2:
        store16(addr, v)
    elif size == 4:
        store32(addr, v)
    elif size == 8:
        store64(addr, v)
    else:
        for i in range(size):
            store8(addr + i, (v >> (8 * i)) & 0xFF)


@njit
def mark_dirty(pm, b, gpa):
    da = pm[ix(b + PS_DIRTY)]
    if da != 0:
        page = (gpa - pm[ix(b + PS_GPA)]) >> 12
        w = page >> 6
        if w < pm[ix(b + PS_DWORDS)]:
            a = da + 8 * w
            store64(a, load64(a) | (1 << (page & 63)))


@njit
def exit_data_put(st, size, v):
    for i in range(size):
        st[ix(EXIT_DATA + i)] = (v >> (8 * i)) & 0xFF


@njit
def coalesce(st, pm, addr, size, v, pio):
    """Append a write to the coalesced ring if it lies fully in a zone and the ring has room."""
    ring = pm[PM_RING]
    if ring == 0:
        return False
    hit = False
    for i in range(pm[PM_NZONES]):
        z = PM_ZONES + 3 * i
        if pm[ix(z + 2)] == pio and addr >= pm[ix(z)] and addr + size <= pm[ix(z)] + pm[ix(z + 1)]:
            hit = True
            break
    if not hit:
        return False
    first = load32(ring)
    last = load32(ring + 4)
    if last >= 170 or (last + 1) % 170 == first:
        return False
    e = ring + 8 + 24 * last
    store64(e, addr)
    store32(e + 8, size)
    store32(e + 12, pio)
    store64(e + 16, 0)
    for i in range(size):
        store8(e + 16 + i, (v >> (8 * i)) & 0xFF)
    store32(ring + 4, (last + 1) % 170)
    st[ix(STAT + ST_COALESCED)] += 1
    return True


@njit
def mmio_read(st, gpa, size):
    """Value of an MMIO read: from the completion data if this is the pending access, else
    record the MMIO exit and stop the instruction."""
    if st[COMP_KIND] == 2 and st[COMP_GPA] == gpa and st[COMP_N] == size:
        v = 0
        for i in range(size):
            v |= (st[ix(COMP_DATA + i)] & 0xFF) << (8 * i)
        st[COMP_KIND] = 0
        return v
    st[EXIT_REASON] = EXIT_MMIO
    st[MMIO_GPA] = gpa
    st[MMIO_LEN] = size
    st[MMIO_WRITE] = 0
    st[EXIT_PENDING] = EXIT_MMIO
    st[ABORT] = 1
    st[ix(STAT + ST_MMIO)] += 1
    return 0


@njit
def mmio_write(st, pm, gpa, size, v):
    if coalesce(st, pm, gpa, size, v, 0):
        return
    if st[MMIO_WR_PENDING] != 0:
        # a second MMIO write in one instruction: queue it, it exits on the next entry
        n = st[MQ_N]
        if n < 4:
            st[ix(MQ + 3 * n)] = gpa
            st[ix(MQ + 3 * n + 1)] = size
            st[ix(MQ + 3 * n + 2)] = v
            st[MQ_N] = n + 1
        return
    st[MMIO_WR_PENDING] = 1
    st[EXIT_REASON] = EXIT_MMIO
    st[MMIO_GPA] = gpa
    st[MMIO_LEN] = size
    st[MMIO_WRITE] = 1
    exit_data_put(st, size, v)
    st[EXIT_PENDING] = EXIT_MMIO
    st[ix(STAT + ST_MMIO)] += 1


@njit
def phys_read(st, pm, gpa, size):
    """Read size bytes (not crossing a page) at a guest-physical address."""
    b = find_slot(pm, gpa)
    if b < 0:
        return mmio_read(st, gpa, size)
    return host_load(pm[ix(b + PS_HOST)] + gpa - pm[ix(b + PS_GPA)], size)


@njit
def phys_write(st, pm, gpa, size, v):
    b = find_slot(pm, gpa)
    if b < 0 or (pm[ix(b + PS_FLAGS)] & SLOT_READONLY) != 0:
        mmio_write(st, pm, gpa, size, v)
        return
    host_store(pm[ix(b + PS_HOST)] + gpa - pm[ix(b + PS_GPA)], size, v)
    mark_dirty(pm, b, gpa)


@njit
def phys_host_page(pm, gpa):
    """(host address of the 4 KiB page holding gpa or -1, 1 if plain writable RAM)."""
    b = find_slot(pm, gpa)
    if b < 0:
        return -1, 0
    pg = gpa & ~0xFFF
    h = pm[ix(b + PS_HOST)] + pg - pm[ix(b + PS_GPA)]
    w = 1
    if (pm[ix(b + PS_FLAGS)] & SLOT_READONLY) != 0 or pm[ix(b + PS_DIRTY)] != 0:
        w = 0
    return h, w


@njit
def pte_read(pm, gpa, size):
    """Paging-structure read: RAM only (a table outside RAM reads as 0, i.e. not present)."""
    b = find_slot(pm, gpa)
    if b < 0:
        return 0
    return host_load(pm[ix(b + PS_HOST)] + gpa - pm[ix(b + PS_GPA)], size)


@njit
def pte_write(pm, gpa, size, v):
    b = find_slot(pm, gpa)
    if b < 0 or (pm[ix(b + PS_FLAGS)] & SLOT_READONLY) != 0:
        return
    host_store(pm[ix(b + PS_HOST)] + gpa - pm[ix(b + PS_GPA)], size, v)
    mark_dirty(pm, b, gpa)
