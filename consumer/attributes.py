"""DynamoDB attribute values → JSON values, with a written number policy.

Number policy (``N``, and each member of ``NS``):

* An integer that fits a signed 64-bit long is emitted as a JSON integer (OpenSearch ``long``
  holds it exactly).
* A non-integer whose shortest float text denotes exactly the same decimal value is emitted as a
  JSON float (``19.99``, ``1.5``, ``1e-7``). The JSON text is exact; OpenSearch reads it as a
  ``double``.
* Everything else — every integer beyond 64 bits (even one a double holds, such as ``1E+20``),
  and decimals with more significant digits than a double keeps — is emitted as a JSON *string*
  holding the exact decimal, e.g. ``"12345678901234567890123"``.
  Nothing is ever rounded silently; a field that mixes such values with plain numbers is rejected
  by OpenSearch's mapping and dead-lettered, never truncated.

Binary (``B``, ``BS``) is emitted as standard base64 text. Sets become JSON arrays, sorted so
that equal sets give equal documents. ``NULL`` becomes ``null``.

All functions here are pure and thread-safe.
"""

from __future__ import annotations

import base64
import decimal
from typing import Any

from consumer.errors import RecordError

_LONG_MIN = -(2**63)
_LONG_MAX = 2**63 - 1
_DECIMAL_CONTEXT = decimal.Context(prec=60)
_LONG_SAFE_DIGITS = 18  # any integer of up to 18 digits fits a long
_DOUBLE_SAFE_DIGITS = 15  # any decimal of up to 15 digits survives a round trip through a double


def parse_number(text: str) -> decimal.Decimal:
    """Parse a DynamoDB ``N`` string exactly. Raises RecordError when it is not a finite number."""
    try:
        value = decimal.Decimal(text)
    except (decimal.InvalidOperation, TypeError, ValueError):
        raise RecordError(f"attribute of type N is not a number: {text!r}") from None
    if not value.is_finite():
        raise RecordError(f"attribute of type N is not finite: {text!r}")
    return value


def canonical_number(text: str) -> str:
    """The canonical text of an ``N`` value: equal numbers ("1.50", "1.5", "15E-1") → equal text."""
    plain = _plain_number(text)
    if isinstance(plain, int):
        return str(plain)
    value = parse_number(text)
    if value == 0:
        return "0"
    normalized = value.normalize(_DECIMAL_CONTEXT)
    if normalized == normalized.to_integral_value():
        return str(int(normalized))
    return format(normalized, "f")


def number_to_json(text: str) -> int | float | str:
    """Apply the number policy in this module's docstring to one ``N`` string."""
    plain = _plain_number(text)
    if plain is not None:
        return plain
    value = parse_number(text)
    if value == value.to_integral_value():
        as_int = int(value)
        if _LONG_MIN <= as_int <= _LONG_MAX:
            return as_int
        return canonical_number(text)
    as_float = float(value)
    if decimal.Decimal(repr(as_float)) == value:
        return as_float
    return canonical_number(text)


def _plain_number(text: str) -> int | float | None:
    """The policy's value of a plainly spelt number ("42", "-7", "19.99"), read off the text; else None.

    Most ``N`` values look like this, and this avoids Decimal arithmetic for them: a plain integer
    of at most 18 digits fits a long, and a plain decimal of at most 15 digits is exactly the
    shortest text of its double (DBL_DIG). Any other spelling returns None and takes the exact path.
    ``isascii`` because ``isdigit`` alone also accepts digits such as "²".
    """
    if not isinstance(text, str) or not text.isascii():
        return None
    digits = text[1:] if text.startswith("-") else text
    if digits.isdigit():
        return int(text) if len(digits) <= _LONG_SAFE_DIGITS else None
    whole, _, fraction = digits.partition(".")
    if whole.isdigit() and fraction.isdigit() and fraction.strip("0"):
        return float(text) if len(whole) + len(fraction) <= _DOUBLE_SAFE_DIGITS else None
    return None


def attribute_to_json(attribute: dict[str, Any]) -> Any:
    """Convert one DynamoDB AttributeValue (``{"S": "x"}``) to its JSON value."""
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


def item_to_json(item: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Convert a DynamoDB item (attribute name → AttributeValue) to a JSON object."""
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
    "M": item_to_json,
    "L": lambda v: [attribute_to_json(element) for element in v],
}
