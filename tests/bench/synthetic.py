"""Synthetic DynamoDB Streams records, shaped exactly as boto3's ``get_records`` returns them.

An ``orders`` table (hash ``pk`` S, range ``sk`` N) whose items are about 1 KB and use every
attribute type the consumer converts: S, N (integers, decimals, one beyond 64 bits), BOOL, NULL,
M, L, SS, NS and B (bytes, as boto3 hands them). Events follow an order's life: INSERT creates an
order; MODIFY changes one of the most recent orders (status moves on, notes change), with NewImage
and OldImage; REMOVE deletes a recent order, half of them as TTL expiries (abandoned orders, with
the TTL service identity). Items therefore see repeated changes, and the index must end with
exactly the live items. Deterministic for a seed.

Changes stay among recent orders on purpose: osmem-server's per-request cost grows with the number
of earlier requests whose documents were later overwritten or deleted, so updates spread uniformly
over 20k items made its `_bulk` 10× slower within 40 requests and the bench a benchmark of that.
"""

from __future__ import annotations

import base64
import datetime as dt
import random
from typing import Any

import orjson

from consumer.pipeline.doc_ids import KeyAttribute, KeySchema

KEY_SCHEMA = KeySchema((KeyAttribute("pk", "S"), KeyAttribute("sk", "N")))
EVENT_WEIGHTS = {"INSERT": 30, "MODIFY": 60, "REMOVE": 10}
ACTIVE_ORDERS = 2000  # MODIFY and user deletes pick among the newest orders
TTL_SHARE = 0.5  # of REMOVEs: TTL expiry (abandoned orders); the rest are user deletes
RECORDS_PER_SECOND = 400  # ApproximateCreationDateTime is whole seconds: many records share one
TTL_IDENTITY = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}

_FIRST_SEQUENCE = 6200000000002513011398
_START = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)
_STATUSES = ("PENDING", "PAID", "PACKED", "SHIPPED", "DELIVERED", "RETURNED")
_CITIES = ("Lyon", "Porto", "Leipzig", "Gdansk", "Turku", "Bilbao", "Graz", "Utrecht")
_WORDS = ("please", "leave", "parcel", "at", "back", "door", "ring", "twice", "fragile", "gift", "wrap", "weekend")
_PRODUCTS = ("espresso cups", "linen apron", "cast iron pan", "tea towel", "chef knife", "pepper mill")
_TAGS = ("priority", "gift", "b2b", "promo", "repeat", "fragile", "oversize", "eco")

Key = tuple[str, str]


class SyntheticStream:
    """Generates the records of one shard, in order. Not thread-safe."""

    def __init__(self, seed: int = 7) -> None:
        self._rng = random.Random(seed)
        self._live: dict[Key, dict[str, Any]] = {}  # key → current image
        self._newest: list[Key] = []  # insertion order; may hold removed keys
        self._next_order = 0
        self._sequence = _FIRST_SEQUENCE
        self._emitted = 0

    @property
    def live_items(self) -> int:
        return len(self._live)

    def records(self, count: int) -> list[dict[str, Any]]:
        events, weights = zip(*EVENT_WEIGHTS.items(), strict=True)
        out = []
        for _ in range(count):
            event = self._rng.choices(events, weights)[0] if self._live else "INSERT"
            out.append(self._record(event))
        return out

    def _record(self, event: str) -> dict[str, Any]:
        identity = None
        if event == "INSERT":
            key = (f"customer#{self._rng.randrange(5000):05d}", str(1_700_000_000 + self._next_order))
            self._next_order += 1
            self._newest.append(key)
            old, new = None, self._new_item(key)
        elif event == "MODIFY":
            key = self._recent_order()
            old = self._live[key]
            new = self._modified(old)
        else:
            key = self._recent_order()
            identity = TTL_IDENTITY if self._rng.random() < TTL_SHARE else None
            old, new = self._live[key], None
        if new is None:
            del self._live[key]
        else:
            self._live[key] = new
        record = self._wire(event, key, old, new)
        if identity is not None:
            record["userIdentity"] = dict(identity)
        return record

    def _recent_order(self) -> Key:
        window = min(ACTIVE_ORDERS, len(self._newest))
        for _ in range(100):
            key = self._newest[-self._rng.randint(1, window)]
            if key in self._live:
                return key
        return next(reversed(self._live))  # the recent orders are nearly all gone: take the newest live one

    def _wire(self, event: str, key: tuple[str, str], old: dict | None, new: dict | None) -> dict[str, Any]:
        self._sequence += self._rng.randrange(1, 5000)
        second = self._emitted // RECORDS_PER_SECOND
        self._emitted += 1
        body: dict[str, Any] = {
            "ApproximateCreationDateTime": _START + dt.timedelta(seconds=second),
            "Keys": {"pk": {"S": key[0]}, "sk": {"N": key[1]}},
        }
        if new is not None:
            body["NewImage"] = new
        if old is not None:
            body["OldImage"] = old
        body["SequenceNumber"] = str(self._sequence)
        body["SizeBytes"] = _size(new) + _size(old)
        body["StreamViewType"] = "NEW_AND_OLD_IMAGES"
        return {
            "eventID": f"{self._rng.getrandbits(128):032x}",
            "eventName": event,
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": "eu-west-1",
            "dynamodb": body,
        }

    def _new_item(self, key: tuple[str, str]) -> dict[str, Any]:
        rng = self._rng
        lines = [self._line() for _ in range(rng.randint(1, 4))]
        return {
            "pk": {"S": key[0]},
            "sk": {"N": key[1]},
            "status": {"S": "PENDING"},
            "customer": {
                "M": {
                    "name": {
                        "S": f"{rng.choice(('Ana', 'Jonas', 'Mia', 'Noah', 'Lea'))} {rng.choice(('Silva', 'Berg'))}"
                    },
                    "email": {"S": f"user{rng.randrange(10**6)}@example.org"},
                    "tier": {"S": rng.choice(("bronze", "silver", "gold"))},
                    "marketing_opt_in": {"BOOL": rng.random() < 0.4},
                    "address": {
                        "M": {
                            "street": {"S": f"{rng.randint(1, 250)} {rng.choice(_WORDS).title()} Street"},
                            "city": {"S": rng.choice(_CITIES)},
                            "postcode": {"S": f"{rng.randrange(10000, 99999)}"},
                            "country": {"S": rng.choice(("FR", "PT", "DE", "PL", "FI", "ES", "AT", "NL"))},
                        }
                    },
                }
            },
            "lines": {"L": lines},
            "line_count": {"N": str(len(lines))},
            "total": {"N": dynamodb_number(f"{rng.randint(5, 900)}.{rng.randrange(100):02d}")},
            "currency": {"S": "EUR"},
            "weight_kg": {"N": dynamodb_number(f"{rng.randint(0, 30)}.{rng.randrange(1000):03d}")},
            "discount_rate": {"N": rng.choice(("0", "0.05", "0.1", "0.15"))},
            "ledger_id": {"N": str(10**24 + rng.getrandbits(64))},  # beyond a long: kept as a string
            "is_gift": {"BOOL": rng.random() < 0.2},
            "coupon": {"NULL": True},
            "tags": {"SS": rng.sample(_TAGS, rng.randint(1, 3))},
            "warehouse_bins": {"NS": [str(n) for n in rng.sample(range(1, 400), 3)]},
            "notes": {"S": " ".join(rng.choice(_WORDS) for _ in range(rng.randint(6, 24)))},
            "signature": {"B": rng.randbytes(48)},
            "shipping": {
                "M": {
                    "carrier": {"S": rng.choice(("DHL", "UPS", "GLS", "PostNL", "CTT"))},
                    "tracking": {"S": f"{rng.getrandbits(60):015X}"},
                    "service": {"S": rng.choice(("standard", "express", "pickup"))},
                    "eta_days": {"N": str(rng.randint(1, 9))},
                    "insured": {"BOOL": rng.random() < 0.1},
                    "instructions": {"NULL": True},
                }
            },
            "created_at": {"S": f"2024-06-01T{rng.randrange(24):02d}:{rng.randrange(60):02d}:00Z"},
            "updated_at": {"N": str(1_717_200_000 + rng.randrange(86400))},
            "revision": {"N": "1"},
        }

    def _line(self) -> dict[str, Any]:
        rng = self._rng
        return {
            "M": {
                "sku": {"S": f"SKU-{rng.randrange(100000):06d}"},
                "name": {"S": rng.choice(_PRODUCTS)},
                "quantity": {"N": str(rng.randint(1, 5))},
                "unit_price": {"N": dynamodb_number(f"{rng.randint(1, 200)}.{rng.randrange(100):02d}")},
                "in_stock": {"BOOL": rng.random() < 0.9},
            }
        }

    def _modified(self, old: dict[str, Any]) -> dict[str, Any]:
        rng = self._rng
        new = dict(old)
        new["status"] = {"S": rng.choice(_STATUSES)}
        new["updated_at"] = {"N": str(int(old["updated_at"]["N"]) + rng.randint(1, 3600))}
        new["revision"] = {"N": str(int(old["revision"]["N"]) + 1)}
        if rng.random() < 0.3:
            new["notes"] = {"S": " ".join(rng.choice(_WORDS) for _ in range(rng.randint(6, 24)))}
        if rng.random() < 0.2:
            new["tags"] = {"SS": rng.sample(_TAGS, rng.randint(1, 3))}
        return new


def dynamodb_number(text: str) -> str:
    """A decimal as DynamoDB keeps and sends it: the fraction's trailing zeros trimmed ("12.50" →
    "12.5", "12.00" → "12"). No GetRecords or Scan answer spells a number otherwise."""
    if "." not in text:
        return text
    trimmed = text.rstrip("0")
    return trimmed[:-1] if trimmed.endswith(".") else trimmed


def _size(image: dict[str, Any] | None) -> int:
    """DynamoDB's item size, roughly: attribute names plus values."""
    if image is None:
        return 0
    return sum(len(name) + _value_size(value) for name, value in image.items())


def _value_size(value: dict[str, Any]) -> int:
    ((tag, inner),) = value.items()
    if tag in ("S", "B", "N"):
        return len(inner)
    if tag in ("SS", "NS"):
        return sum(len(v) for v in inner)
    if tag == "M":
        return 3 + _size(inner)
    if tag == "L":
        return 3 + sum(1 + _value_size(v) for v in inner)
    return 1


def as_wire(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records as a worker reads them: parsed from GetRecords' JSON (binary as base64 text, the
    creation time as Unix seconds), not as boto3 hands them."""
    return orjson.loads(orjson.dumps(records, default=_wire_value, option=orjson.OPT_PASSTHROUGH_DATETIME))


def _wire_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dt.datetime):
        return value.timestamp()
    raise TypeError(f"{type(value).__name__} is not in a GetRecords answer")
