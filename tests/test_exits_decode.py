"""Exit decoding is a pure function of the kvm_run page: tested here with synthetic pages."""
import struct

import pytest

import kvmlab
from kvmlab import exits


def page(reason: int, union: bytes = b"", pio: bytes = b"") -> bytearray:
    p = bytearray(3 * 4096)
    struct.pack_into("<I", p, 8, reason)
    p[32:32 + len(union)] = union
    p[4096:4096 + len(pio)] = pio
    return p


def test_an_out_exit_reports_port_size_count_and_the_bytes_in_the_pio_page():
    p = page(2, struct.pack("<BBHIQ", 1, 1, 0x3F8, 1, 4096), pio=b"H")
    e = exits.decode(p)
    assert e.reason == kvmlab.KVM_EXIT_IO and isinstance(e, kvmlab.IoExit)
    assert (e.is_out, e.port, e.size, e.count, e.data) == (True, 0x3F8, 1, 1, b"H")
    assert repr(e) == "<IO OUT port=0x3f8 size=1 count=1 data=48>"


def test_completing_an_in_exit_writes_every_element_into_the_pio_page():
    p = page(2, struct.pack("<BBHIQ", 0, 2, 0x60, 3, 4096))
    e = exits.decode(p)
    e.complete(0xBEEF)
    assert bytes(p[4096:4102]) == b"\xef\xbe" * 3


def test_completing_an_in_exit_with_the_wrong_number_of_bytes_says_how_many_it_needs():
    e = exits.decode(page(2, struct.pack("<BBHIQ", 0, 4, 0x60, 2, 4096)))
    with pytest.raises(ValueError, match="2 x 4 bytes = 8 bytes"):
        e.complete(b"\0" * 4)


def test_an_out_exit_cannot_be_completed_with_a_value():
    e = exits.decode(page(2, struct.pack("<BBHIQ", 1, 1, 0x80, 1, 4096)))
    with pytest.raises(ValueError, match="only an IN exit"):
        e.complete(1)


def test_an_mmio_write_exit_shows_only_len_bytes_of_data():
    p = page(6, struct.pack("<Q8sIB", 0xFEE00000, b"\x11\x22\x33\x44\x55\x66\x77\x88", 2, 1))
    e = exits.decode(p)
    assert (e.phys_addr, e.len, e.is_write, e.data, e.value) == (0xFEE00000, 2, True, b"\x11\x22", 0x2211)


def test_completing_an_mmio_read_writes_data_at_offset_40():
    p = page(6, struct.pack("<Q8sIB", 0x1000, b"\0" * 8, 4, 0))
    exits.decode(p).complete(0x12345678)
    assert bytes(p[40:44]) == bytes.fromhex("78563412")


def test_a_debug_exit_carries_exception_pc_dr6_and_dr7():
    e = exits.decode(page(4, struct.pack("<IIQQQ", 1, 0, 0x1005, 0xFFFF4FF0, 0x400)))
    assert (e.exception, e.pc, e.dr6, e.dr7) == (1, 0x1005, 0xFFFF4FF0, 0x400)


def test_an_emulation_failure_exposes_the_instruction_bytes():
    union = struct.pack("<IIQB", 1, 3, 1, 2) + b"\x0f\x0b"
    e = exits.decode(page(17, union))
    assert (e.suberror, e.ndata, e.insn_bytes) == (1, 3, b"\x0f\x0b")


def test_a_fail_entry_exit_reports_the_hardware_reason():
    e = exits.decode(page(9, struct.pack("<QI", 0x80000021, 0)))
    assert e.hardware_entry_failure_reason == 0x80000021


@pytest.mark.parametrize("reason,name", [(5, "HLT"), (8, "SHUTDOWN"), (7, "IRQ_WINDOW_OPEN"), (10, "INTR")])
def test_exits_without_data_still_have_a_named_reason(reason, name):
    e = exits.decode(page(reason))
    assert e.reason == reason and e.name == name and repr(e) == f"<{name}>"


def test_an_exit_reason_unknown_to_kvmlab_decodes_as_a_plain_number():
    e = exits.decode(page(999))
    assert e.reason == 999 and e.name == "999"


def test_exit_fields_are_plain_values_for_json():
    e = exits.decode(page(2, struct.pack("<BBHIQ", 1, 1, 0xF4, 1, 4096), pio=b"\x00"))
    assert e.fields() == {"direction": 1, "size": 1, "port": 0xF4, "count": 1, "data": "00"}
