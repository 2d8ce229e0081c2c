"""AWS Signature Version 4 for the JSON 1.0 POSTs of ``consumer.aws.json_client``, with the signing key
cached per day.

botocore's ``SigV4Auth`` builds an ``AWSRequest``, parses the URL twice and derives the signing key
(four HMACs) on every request: about a third of the CPU of a GetRecords or lease write at a thousand
shards (measured with py-spy). A JSON 1.0 call is always the same shape — POST, the endpoint's path,
no query, a signed payload, four or five headers — so the canonical request is one format string;
the signing key changes only with the day, the secret and the scope. ``tests/unit/aws/test_sigv4.py``
holds the result equal to botocore's signature for the same request and instant.

Thread-safe: the key cache is a dict replaced whole.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from urllib.parse import urlsplit

ALGORITHM = "AWS4-HMAC-SHA256"
_DEFAULT_PORTS = {"http": 80, "https": 443}


class JsonRequestSigner:
    """Signs POSTs of ``application/x-amz-json-1.0`` bodies to one endpoint, region and service."""

    def __init__(self, endpoint_url: str, region: str, service: str) -> None:
        parts = urlsplit(endpoint_url)
        hostname = parts.hostname or ""
        hostname = f"[{hostname}]" if ":" in hostname else hostname  # an IPv6 literal
        default = _DEFAULT_PORTS.get(parts.scheme)
        self.host = hostname if parts.port in (None, default) else f"{hostname}:{parts.port}"
        self.path = parts.path or "/"
        self._region = region
        self._service = service
        self._keys: dict[tuple[str, str], bytes] = {}

    def headers(
        self,
        target: str,
        body: bytes,
        access_key: str,
        secret_key: str,
        token: str | None,
        now: datetime | None = None,
    ) -> dict[str, str]:
        """Every header of the request (``X-Amz-Target`` = ``target``), the signature included."""
        moment = now or datetime.now(UTC)
        stamp = moment.strftime("%Y%m%dT%H%M%SZ")
        day = stamp[:8]
        scope = f"{day}/{self._region}/{self._service}/aws4_request"
        signed = "content-type;host;x-amz-date;" + ("x-amz-security-token;" if token else "") + "x-amz-target"
        token_line = f"x-amz-security-token:{token}\n" if token else ""
        canonical = (
            f"POST\n{self.path}\n\n"
            f"content-type:application/x-amz-json-1.0\nhost:{self.host}\nx-amz-date:{stamp}\n{token_line}"
            f"x-amz-target:{target}\n\n{signed}\n{hashlib.sha256(body).hexdigest()}"
        )
        to_sign = f"{ALGORITHM}\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        signature = hmac.new(self._key(secret_key, day), to_sign.encode(), hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/x-amz-json-1.0",
            "Host": self.host,
            "X-Amz-Date": stamp,
            "X-Amz-Target": target,
            "Authorization": f"{ALGORITHM} Credential={access_key}/{scope}, SignedHeaders={signed}, Signature={signature}",
        }
        if token:
            headers["X-Amz-Security-Token"] = token
        return headers

    def _key(self, secret_key: str, day: str) -> bytes:
        cached = self._keys.get((secret_key, day))
        if cached is None:
            key = _hmac(f"AWS4{secret_key}".encode(), day)
            for part in (self._region, self._service, "aws4_request"):
                key = _hmac(key, part)
            self._keys = {(secret_key, day): key}  # one entry: a new day or secret replaces it
            cached = key
        return cached


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()
