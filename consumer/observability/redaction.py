"""One rule for what no output shows: credentials in URLs, authorization headers, AWS session tokens
and signatures, and the secrets this process was given (the OpenSearch password, the masking key).

``redact(text)`` applies it to a text; ``redact_event`` to a log event (every log line, ours and the
libraries', goes through it: ``consumer.observability.logging``), and the probe listener to what
``/healthz`` and ``/readyz`` say. ``register_secrets`` adds the exact values of this process's
secrets, wherever they would appear. Thread-safe: the registry only grows, and is replaced whole.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

REDACTED = "<redacted>"

# scheme://user:password@host: the user stays, the password goes
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s'\"]*):[^@\s'\"]*?@")
# an authorization header's whole value (Basic …, Bearer …, AWS4-HMAC-SHA256 Credential=…, Signature=…)
_AUTHORIZATION = re.compile(r"(?i)(?P<head>\bauthorization['\"]?\s*[:=]\s*(?:b?['\"])?)[^'\"\r\n]+")
# single-valued secrets in headers, query strings, dict reprs and JSON
_NAMED = re.compile(
    r"(?i)(?P<head>\b(?:x-amz-security-token|x-amz-signature|signature|aws_secret_access_key|aws_session_token"
    r"|secretaccesskey|sessiontoken|password)['\"]?\s*[:=]\s*(?:b?['\"])?)[^\s'\",&}]+"
)

_secrets: tuple[str, ...] = ()  # longest first: a secret holding another is replaced whole


def register_secrets(values: Iterable[str | bytes | None]) -> None:
    """Never show these exact values (of at least 4 characters) in any output of this process."""
    global _secrets
    texts = {value.decode(errors="replace") if isinstance(value, bytes) else value for value in values if value}
    _secrets = tuple(sorted(set(_secrets) | {text for text in texts if len(text) >= 4}, key=len, reverse=True))


def redact(text: str) -> str:
    """``text`` with every secret it holds replaced by ``<redacted>``."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    if "://" in text:
        text = _URL_PASSWORD.sub(rf"\g<head>:{REDACTED}@", text)
    return _NAMED.sub(rf"\g<head>{REDACTED}", _AUTHORIZATION.sub(rf"\g<head>{REDACTED}", text))


def redact_event(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """A structlog processor: ``redact`` on every text of the event (after exceptions are formatted)."""
    for key, value in event.items():
        event[key] = _redact_nested(value)
    return event


def _redact_nested(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _redact_nested(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact_nested(item) for item in value]
    return value
