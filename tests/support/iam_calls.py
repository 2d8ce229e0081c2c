"""Checking IAM policies against recorded calls (tests/integration/test_iam_coverage.py, test_kcl_iam.py):
the calls the recording fronts saw as (IAM action, resource ARN), the policy files of deploy/iam
named for a test's table, and whether a statement grants a call."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable
from pathlib import Path

IAM = Path(__file__).parents[2] / "deploy" / "iam"
REGION, ACCOUNT, DOMAIN = "us-east-1", "123456789012", "orders"  # moto's region and account


def unused_grants(
    statements: list[dict], calls: set[tuple[str, str]], exempt: Callable[[str, str], bool]
) -> list[tuple[str, str]]:
    """(Sid, action) of each grant no call used, unless ``exempt(sid, action)``."""
    return [
        (statement["Sid"], action)
        for statement in statements
        for action in listed(statement["Action"])
        if not any(grants({**statement, "Action": action}, *call) for call in calls)
        and not exempt(statement["Sid"], action)
    ]


def recorded_calls(
    dynamodb: list[tuple[str, str]], opensearch: list[tuple[str, str]], table: str
) -> set[tuple[str, str]]:
    """The recorded calls as (IAM action, resource ARN)."""
    streams = {resource for _, resource in dynamodb if "/stream/" in resource}
    calls = set()
    for operation, resource in dynamodb:
        if operation == "GetRecords":  # named by its iterator on the wire: the stream it reads
            calls.update((f"dynamodb:{operation}", stream) for stream in streams)
            continue
        for name in resource.split(","):
            arn = name if name.startswith("arn:") else f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"
            calls.add((f"dynamodb:{operation}", arn))
    for method, path in opensearch:
        calls.add((f"es:ESHttp{method.title()}", f"arn:aws:es:{REGION}:{ACCOUNT}:domain/{DOMAIN}{path}"))
    return calls


def policy_statements(name: str, table: str) -> list[dict]:
    """The policy's statements for this test's table, index and region (the files name `orders`)."""
    text = (IAM / name).read_text()
    text = text.replace(":table/orders", f":table/{table}").replace(
        f"domain/{DOMAIN}/orders", f"domain/{DOMAIN}/{table}"
    )
    return json.loads(text.replace("eu-west-1", REGION))["Statement"]


def listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def grants(statement: dict, action: str, resource: str) -> bool:
    return any(fnmatch.fnmatchcase(action.lower(), pattern.lower()) for pattern in listed(statement["Action"])) and any(
        fnmatch.fnmatchcase(resource, pattern) for pattern in listed(statement["Resource"])
    )
