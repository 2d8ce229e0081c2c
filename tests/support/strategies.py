"""Hypothesis strategies for DynamoDB values, shared by property tests.

Numbers are generated as ``Decimal`` *values* within DynamoDB's limits (38 significant digits,
magnitude 1E-130 … <1E+126) and then written in one of the many spellings DynamoDB accepts for the
same number (``1.5``, ``1.50``, ``15E-1``, ``0.15e1`` ...), so tests can tell "same number" from
"same text".
"""

from __future__ import annotations

import decimal
from decimal import Decimal

from hypothesis import strategies as st

MAX_DIGITS = 38
MIN_EXPONENT = -130  # smallest positive number: 1E-130
MAX_ADJUSTED = 125  # largest: 9.99...E+125

LONG_MIN = -(2**63)
LONG_MAX = 2**63 - 1

# Numbers where the number policy changes its mind, or where floats famously go wrong.
EDGE_NUMBERS = tuple(
    Decimal(text)
    for text in (
        "0",
        "-0",
        "1",
        "-1",
        "0.1",
        "19.99",
        "1e-7",
        "1.5",
        str(2**53),
        str(2**53 + 1),
        str(LONG_MAX),
        str(LONG_MAX + 1),
        str(LONG_MIN),
        str(LONG_MIN - 1),
        "1E+20",
        "12345678901234567890123",
        "0.30000000000000004",
        "0.3000000000000000444",
        "9.9999999999999999999999999999999999999E+125",
        "1E-130",
        "-1E-130",
        "3.14159265358979323846264338327950288",
        "1.0000000000000001",  # 17 digits: the nearest double is 1.0
        "0.1000000000000001",
        "123456789012345.67",
    )
)


@st.composite
def _wide_decimals(draw: st.DrawFn, max_digits: int = MAX_DIGITS) -> Decimal:
    coefficient = draw(st.integers(1, 10**max_digits - 1))
    digits = len(str(coefficient))
    exponent = draw(st.integers(MIN_EXPONENT, MAX_ADJUSTED - (digits - 1)))
    negative = draw(st.booleans())
    return Decimal((int(negative), tuple(int(c) for c in str(coefficient)), exponent))


@st.composite
def _near_double_precision(draw: st.DrawFn) -> Decimal:
    """Plain decimals of 14–19 significant digits: where a double stops being exact."""
    digits = draw(st.integers(14, 19))
    coefficient = draw(st.integers(10 ** (digits - 1), 10**digits - 1))
    return Decimal(coefficient).scaleb(-draw(st.integers(1, digits + 2))) * draw(st.sampled_from([1, -1]))


def _in_dynamodb_range(value: Decimal) -> bool:
    return value == 0 or MIN_EXPONENT <= value.adjusted() <= MAX_ADJUSTED


def dynamo_decimals() -> st.SearchStrategy[Decimal]:
    """Any number a DynamoDB ``N`` can hold, biased toward the interesting ones."""
    return st.one_of(
        st.sampled_from(EDGE_NUMBERS),
        st.integers(-1000, 1000).map(Decimal),
        st.integers(LONG_MIN - 10, LONG_MAX + 10).map(Decimal),
        st.integers(-(10**38) + 1, 10**38 - 1).map(Decimal),
        st.floats(allow_nan=False, allow_infinity=False).map(lambda f: Decimal(repr(f))).filter(_in_dynamodb_range),
        st.decimals(places=2, min_value=-(10**6), max_value=10**6, allow_nan=False, allow_infinity=False),
        _near_double_precision(),
        _wide_decimals(),
    )


@st.composite
def spelling_of(draw: st.DrawFn, value: Decimal) -> str:
    """One of the texts DynamoDB accepts for ``value``: padded, plain, scientific, any case."""
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    padding = draw(st.integers(0, 4))  # trailing zeros with a matching exponent shift
    padded = Decimal((sign, digits + (0,) * padding, exponent - padding))
    form = draw(st.sampled_from(["str", "plain", "coefficient_e", "lower"]))
    if form == "plain":
        return format(padded, "f")
    if form == "coefficient_e":
        mantissa = "".join(str(d) for d in padded.as_tuple().digits)
        return f"{'-' if sign else ''}{mantissa}E{padded.as_tuple().exponent}"
    text = str(padded)
    return text.lower() if form == "lower" else text


def number_texts() -> st.SearchStrategy[str]:
    """The text of a random DynamoDB number in a random spelling."""
    return dynamo_decimals().flatmap(spelling_of)


def same_number(left: str, right: str) -> bool:
    """Whether two N texts denote the same number (exact, whatever their spelling)."""
    with decimal.localcontext(decimal.Context(prec=100)):
        return Decimal(left) == Decimal(right)


# Strings that stress an escaping scheme: the separator, the escape, the hashed-id marker.
TRICKY_CHARACTERS = ("a", "b", "|", "\\", "#", ":", "é", "€", "😀")


def tricky_strings(min_size: int = 1, max_size: int = 8) -> st.SearchStrategy[str]:
    """Non-empty strings made mostly of characters an id encoding must escape."""
    return st.one_of(
        st.text(st.sampled_from(TRICKY_CHARACTERS), min_size=min_size, max_size=max_size),
        st.text(min_size=min_size, max_size=max_size),
    )


# Numbers spelt as the stream spells most of them, at and around the compiled path's limits
PLAIN_NUMBERS = st.one_of(
    st.integers(-(10**40), 10**40).map(str),  # 1 to 41 digits: ints, longs, Decimals, too long
    st.from_regex(r"\A-?0{0,3}[0-9]{1,16}\.[0-9]{1,16}\Z"),  # decimals, some beyond a double's 15 digits
    st.from_regex(r"\A-?0\.0{3,6}[1-9]{1,4}\Z"),  # around 1e-5, below which a float is written with an exponent
    st.sampled_from(["0", "-0", "0.0", "1.50", "007", "9223372036854775807", "9223372036854775808", "-" + "9" * 19]),
)
MALFORMED_NUMBERS = st.sampled_from(["", "-", ".5", "5.", "1..2", "1e5", " 1", "1_000", "²", "١٢", "NaN", "1" * 39])

# Spellings at the compiled path's limits: 18 and 19 digits, a long's ends, 15 and 16 digits, 1e-5,
# 38 and 39 digits, leading and trailing zeros, negative zero
BOUNDARY_NUMBERS = [
    "999999999999999999",
    "1000000000000000000",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "00000000000000000001",
    "12345678901234567890123456789012345678",
    "123456789012345678901234567890123456789",
    "10000000000000000000000000000000000000000",
    "123456789012.345",
    "1234567890123.456",
    "0.00001",
    "0.000012",
    "0.000001",
    "-0.00001",
    "000.5",
    "1.0",
    "1.50",
    "-0",
    "-0.0",
    "0",
]
