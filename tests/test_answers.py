from hypothesis import given
from hypothesis import strategies as st

from selfteach.data.answers import (
    answers_match,
    extract_answer,
    extract_choice,
    is_correct,
    last_boxed,
)


def test_extraction_formats():
    assert extract_answer("work...\n#### 1,234") == "1234"
    assert extract_answer(r"so \boxed{\frac{1}{2}}.") == "0.5"  # canonical key of the value
    assert extract_answer("The answer is 42.") == "42"
    assert extract_answer("The final answer is $5.50") == "5.5"
    assert extract_answer("first 3, then 7") == "7"
    assert extract_answer("Therefore, the final answer is 1 + 7 = 8. Next 9") == "8"
    assert extract_answer("no number here") is None
    assert extract_answer("") is None


def test_boxed_nested_and_last():
    assert last_boxed(r"\boxed{1} then \boxed{\frac{a}{b}}") == r"\frac{a}{b}"
    assert last_boxed(r"\boxed{unclosed") is None
    assert last_boxed("none") is None


def test_choice_letters():
    assert extract_choice("The answer is (C).") == "C"
    assert extract_choice("B. because") == "B"
    assert extract_choice(r"\boxed{D}") == "D"
    assert is_correct("The answer is B", "b", kind="choice")
    assert not is_correct("The answer is B", "C", kind="choice")


def test_equivalence():
    assert answers_match("14", "14.0")
    assert answers_match("1/2", "0.5")
    assert answers_match(r"\frac{1}{2}", "0.5")
    assert answers_match("1,000", "1000")
    assert not answers_match("13", "14")
    assert not answers_match(None, "1")
    assert is_correct("so 7 + 7 = 14. The answer is 14.", "14")


@given(st.integers(min_value=-10**9, max_value=10**9))
def test_integer_roundtrip(n):
    assert extract_answer(f"Some reasoning.\nThe answer is {n}.") == str(n)
    assert extract_answer(f"#### {n:,}") == str(n)
    assert answers_match(str(n), f"{n}.0")


@given(st.text(max_size=200))
def test_extractors_never_crash(text):
    extract_answer(text)
    extract_choice(text)
    last_boxed(text)
