"""kvmlab.exercise: the predict/check helper of the lessons."""
import enum

from kvmlab.exercise import check, matches


def test_unanswered_is_not_correct_and_says_so(capsys):
    check(None, 3)
    assert capsys.readouterr().out.startswith("not answered yet")


def test_numbers_match_in_any_notation():
    assert matches(45, 45) and matches("0x2d", 45) and matches(" 45 ", 45) and matches(45.0, 45)
    assert not matches(44, 45)


def test_strings_ignore_case_and_sets_ignore_order():
    assert matches("eexist", "EEXIST")
    assert matches(["HLT", "io"], {"IO", "HLT"})
    assert not matches(["HLT"], {"IO", "HLT"})


def test_enums_compare_by_name_or_value():
    class E(enum.IntEnum):
        HLT = 5
    assert matches(5, E.HLT) and matches("5", E.HLT)


def test_wrong_answer_prints_the_hint_not_the_truth(capsys):
    check(1, 12345, hint="look at the exit counts")
    out = capsys.readouterr().out
    assert "look at the exit counts" in out and "12345" not in out
