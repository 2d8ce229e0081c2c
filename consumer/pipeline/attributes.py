"""DynamoDB attribute values → JSON values, with a written number policy (docs/mapping.md).

Number policy (``N``, and each member of ``NS``): every number is a JSON *number* whose text is
exact. Nothing is ever rounded and no number becomes a string.

* An integer that fits a Java long is a Python ``int``.
* A decimal of at most 15 digits, at least 1e-5 in magnitude (``19.99``), is a Python ``float``:
  its shortest text is the same decimal, so the JSON text is exact.
* Every other value (a longer integer, a longer or smaller decimal) is a ``decimal.Decimal`` in
  canonical form: no exponent, no trailing zeros (``12345678901234567890123``, ``0.0000001``).
  ``dumps_json`` writes it as a JSON number with exactly those digits (orjson cannot write a
  Decimal or an int beyond 64 bits by itself).

The Python type depends on the number, never on how it was spelt (``1E-2`` and ``0.010`` are the
float ``0.01``), so a document read back from the index equals the one written.

So a number's JSON text is always its canonical decimal: equal numbers give equal text, which
is what an exact (keyword) search of a number matches. Binary (``B``, ``BS``) is emitted as
standard base64 text. Sets become JSON arrays, sorted so that equal sets give equal documents.
``NULL`` becomes ``null``.

``item_to_json`` is compiled (``consumer/pipeline/_attributes.c``) where the build had a C compiler:
it converts the common types itself and hands every other value to this module's Python functions,
which remain the definition (``python_item_to_json``) and the fallback where nothing was compiled.
So is ``python_item_json``, the JSON text of ``item_to_json``'s document: ``_attributes_text.c`` writes
it straight from the item (``consumer.pipeline.bulk.item_lines``, with the ``_bulk`` lines around it),
which spares building the document's values when only its text is needed, and ``_attributes_images.c``
from the item's text as a GetRecords answer spelt it (``bulk.image_lines``), which spares parsing it.

All functions here are pure and thread-safe.
"""

from __future__ import annotations

import base64
import decimal
from typing import Any

import orjson

from consumer.errors import RecordError

_LONG_MIN = -(2**63)
_LONG_MAX = 2**63 - 1
_DECIMAL_CONTEXT = decimal.Context(prec=60)
_LONG_SAFE_DIGITS = 18  # any integer of up to 18 digits fits a long
_DOUBLE_SAFE_DIGITS = 15  # any decimal of up to 15 digits survives a round trip through a double
# DynamoDB's numbers: 38 significant digits, magnitudes 1E-130 … 9.99…E+125 (adjusted exponents -130 … 125)
_MAX_DIGITS = 38
_MIN_EXPONENT, _MAX_EXPONENT = -130, 125
_MAX_NUMBER_TEXT = 512  # "0." + 129 zeros + 38 digits is the longest plain spelling: far below


def parse_number(text: str) -> decimal.Decimal:
    """Parse a DynamoDB ``N`` string exactly.

    Raises RecordError when it is not a number DynamoDB can hold: not finite, more than 38
    significant digits, or a magnitude outside 1E-130 … 9.99…E+125. Those bounds also bound the
    cost of everything done with the value afterwards (a hostile ``1E+999999999`` would otherwise
    be written out as a billion digits).
    """
    if isinstance(text, str) and len(text) > _MAX_NUMBER_TEXT:
        raise RecordError(f"attribute of type N is not a number DynamoDB holds: {len(text)} characters long")
    try:
        value = decimal.Decimal(text)
    except (decimal.InvalidOperation, TypeError, ValueError):
        raise RecordError(f"attribute of type N is not a number: {text!r}") from None
    if not value.is_finite():
        raise RecordError(f"attribute of type N is not finite: {text!r}")
    if value and (_too_many_digits(value) or not _MIN_EXPONENT <= value.adjusted() <= _MAX_EXPONENT):
        raise RecordError(
            "attribute of type N is not a number DynamoDB holds (at most 38 significant digits, magnitude "
            f"1E-130 … 9.99…E+125): {text[:60]!r}"
        )
    return value


def _too_many_digits(value: decimal.Decimal) -> bool:
    """Whether a non-zero finite Decimal has more significant digits than DynamoDB keeps. A Decimal's
    digits carry no leading zeros; trailing ones (``1000``, ``1.50``) are not significant."""
    digits = value.as_tuple().digits
    if len(digits) <= _MAX_DIGITS:  # nearly always: no need to look at them
        return False
    end = len(digits)
    while digits[end - 1] == 0:
        end -= 1
    return end > _MAX_DIGITS


def canonical_number(text: str) -> str:
    """The canonical text of an ``N`` value: equal numbers ("1.50", "1.5", "15E-1") → equal text."""
    plain = _plain_number(text)
    if isinstance(plain, int):
        return str(plain)
    return canonical_decimal_text(parse_number(text))


def number_to_json(text: str) -> int | float | decimal.Decimal:
    """Apply the number policy in this module's docstring to one ``N`` string.

    The result depends on the number only, never on its spelling: any other spelling is first
    brought to its canonical text, which then gets the plain-spelling rules.
    """
    plain = _plain_number(text)
    if plain is not None:
        return plain
    canonical = canonical_decimal_text(parse_number(text))
    plain = _plain_number(canonical)
    if plain is not None:
        return plain
    as_int = int(canonical) if "." not in canonical else None
    if as_int is not None and _LONG_MIN <= as_int <= _LONG_MAX:
        return as_int
    return decimal.Decimal(canonical)


def dumps_json(value: Any, option: int = 0) -> bytes:
    """orjson's ``dumps`` that also writes the policy's ``Decimal`` numbers, as exact JSON numbers."""
    return orjson.dumps(value, default=_exact_number, option=option)


def _exact_number(value: Any) -> orjson.Fragment:
    if isinstance(value, decimal.Decimal) and value.is_finite():
        return orjson.Fragment(canonical_decimal_text(value))
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def canonical_decimal_text(value: decimal.Decimal) -> str:
    """The canonical text of a finite Decimal: no exponent, no trailing zeros, ``0`` for zero."""
    text = str(value)
    digits = text[1:] if text.startswith("-") else text
    if digits.isdigit() and digits[0] != "0":  # an integer spelt plainly (the policy's long integers)
        return text
    if value == 0:
        return "0"
    normalized = value.normalize(_DECIMAL_CONTEXT)
    if normalized == normalized.to_integral_value():
        return str(int(normalized))
    return format(normalized, "f")


def _plain_number(text: str) -> int | float | None:
    """The policy's value of a plainly spelt number ("42", "-7", "19.99"), read off the text; else None.

    Most ``N`` values look like this, and this avoids Decimal arithmetic for them: a plain integer
    of at most 18 digits fits a long, and a plain decimal of at most 15 digits is exactly the
    shortest text of its double (DBL_DIG), which orjson writes without an exponent from 1e-5 up.
    Any other spelling returns None and takes the exact path. ``isascii`` because ``isdigit``
    alone also accepts digits such as "²".
    """
    if not isinstance(text, str) or not text.isascii():
        return None
    digits = text[1:] if text.startswith("-") else text
    if digits.isdigit():
        return int(text) if len(digits) <= _LONG_SAFE_DIGITS else None
    whole, _, fraction = digits.partition(".")
    if not (whole.isdigit() and fraction.isdigit() and fraction.strip("0")):
        return None
    if len(whole) + len(fraction) > _DOUBLE_SAFE_DIGITS or (not whole.strip("0") and fraction.startswith("00000")):
        return None  # too many digits for a double, or below 1e-5 (orjson would write an exponent)
    return float(text)


def attribute_to_json(attribute: dict[str, Any]) -> Any:
    """Convert one DynamoDB AttributeValue (``{"S": "x"}``) to its JSON value (in Python throughout)."""
    if not isinstance(attribute, dict):
        raise RecordError(f"attribute value must be a map with one type tag, got {type(attribute).__name__}")
    if len(attribute) != 1:
        raise RecordError(f"attribute value must have exactly one type tag, got {sorted(attribute)}")
    ((tag, value),) = attribute.items()
    # The most frequent types first, skipping the dispatch; any other value is checked below.
    if tag == "S" and isinstance(value, str):
        return value
    if tag == "N" and isinstance(value, str):
        return number_to_json(value)
    converter = _CONVERTERS.get(tag)
    if converter is None:
        raise RecordError(f"unknown DynamoDB attribute type {tag!r}")
    if not isinstance(value, _VALUE_TYPES[tag]):
        raise RecordError(f"attribute of type {tag} has a value of Python type {type(value).__name__}")
    return converter(value)


def python_item_to_json(item: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Convert a DynamoDB item (attribute name → AttributeValue) to a JSON object, in Python."""
    if not isinstance(item, dict):
        raise RecordError(f"item must be a map of attribute values, got {type(item).__name__}")
    return {name: attribute_to_json(attribute) for name, attribute in item.items()}


def binary_to_text(value: bytes | str) -> str:
    """Base64 text of a ``B`` value. boto3 gives bytes; raw wire JSON already gives base64 text."""
    if isinstance(value, str):
        return value
    return base64.b64encode(value).decode("ascii")


_SET_TYPES = (list, tuple, set, frozenset)
# The Python type of each tag's value in boto3's output (and in the wire JSON): anything else would
# crash the converter or be coerced silently (bool("false") is True), so it is rejected as poison.
_VALUE_TYPES: dict[str, type | tuple[type, ...]] = {
    "S": str,
    "N": str,
    "B": (bytes, bytearray, str),
    "BOOL": bool,
    "NULL": bool,
    "SS": _SET_TYPES,
    "NS": _SET_TYPES,
    "BS": _SET_TYPES,
    "M": dict,
    "L": (list, tuple),
}

_CONVERTERS = {
    "S": lambda v: v,
    "N": number_to_json,
    "B": binary_to_text,
    "BOOL": bool,
    "NULL": lambda v: None,
    "SS": lambda v: sorted(v),
    "NS": lambda v: [number_to_json(n) for n in sorted(v, key=parse_number)],
    "BS": lambda v: sorted(binary_to_text(b) for b in v),
    "M": python_item_to_json,
    "L": lambda v: [attribute_to_json(element) for element in v],
}


def python_item_json(item: dict[str, dict[str, Any]], reserved: frozenset[str]) -> bytes | None:
    """The JSON text of ``item_to_json(item)``, or None for the caller's own path to decide: when a
    top-level name is in ``reserved``, or when the document is not JSON (``dumps_json`` refuses it)."""
    if not isinstance(item, dict) or not reserved.isdisjoint(item):
        return None
    document = python_item_to_json(item)
    try:
        return dumps_json(document)
    except orjson.JSONEncodeError:
        return None


try:
    from consumer.pipeline import _attributes
except ImportError:  # built without a C compiler: the Python definition serves
    COMPILED = False
    item_to_json = python_item_to_json
else:
    COMPILED = True
    _attributes.configure(attribute_to_json, number_to_json, python_item_to_json, decimal.Decimal, dumps_json)
    item_to_json = _attributes.item_to_json
