"""DynamoDB and DynamoDB Streams calls straight off the wire: a SigV4-signed JSON 1.0 POST whose
answer is parsed once with orjson.

botocore turns every answer into Python objects through its shape parser, which costs about 0.6 ms
of CPU per item or record (measured): most of the consumer's cost on its hot calls, GetRecords
(``consumer.shards.raw_records``), the backfill's Scan (``consumer.backfill.scan``) and the lease
table's item reads and writes (``consumer.leases.table``). This sends
the same request to the boto3 client's endpoint and region (through its proxy, trusting
``AWS_CA_BUNDLE``), signed by ``consumer.aws.sigv4`` with the default credential chain's credentials
(the chain every client of this process is built from), and gives back the answer in wire form (binary values as base64 text,
timestamps as epoch seconds).

Every way a call can fail leaves here as a ``WireError``, classified at this edge, so that no
failure can escape the callers' handlers (``outcome`` names it in ``cdc_aws_requests_total``):

* ``WireCallError``: the service answered with an error (its code and message);
* ``NoAnswerError``: no answer (refused, reset, timed out, a malformed HTTP answer);
* ``CredentialsError``: the credentials could not be had (a refresh that failed: STS, the container
  credentials endpoint or IMDS unreachable or refusing);
* ``BadAnswerError``: an answer that is not the service's JSON (a proxy's HTML page, a truncated
  body).

Each is retriable: callers back off and try again, loudly. Each answer's ``Date`` is handed to the
``AwsClock`` when one is given. Thread-safe: each thread has its own connection
(``consumer.aws.connections``), and credentials are frozen per request.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import botocore.session
import orjson
from botocore.exceptions import ClientError

from consumer.aws.accounting import Observer, error_outcome
from consumer.aws.clock import AwsClock
from consumer.aws.connections import ConnectionFailedError, KeepAliveConnections
from consumer.aws.sigv4 import JsonRequestSigner


class WireError(Exception):
    """A wire call that failed; ``outcome`` is its label in ``cdc_aws_requests_total``."""

    outcome = "network"


class NoAnswerError(WireError):
    """The request got no answer (connection refused, reset, timed out, a malformed HTTP answer)."""


class CredentialsError(WireError):
    """The credentials to sign the request could not be had (their refresh failed)."""

    outcome = "credentials"


class BadAnswerError(WireError):
    """An answer that is not the service's JSON object: from something in between, or cut short."""

    outcome = "bad_answer"


class WireCallError(WireError):
    """The service answered with an error (``status``, the code after ``#`` in ``__type``, its message)."""

    def __init__(self, operation: str, status: int, code: str, message: str) -> None:
        super().__init__(f"{operation} failed: {code or status}: {message}")
        self.operation = operation
        self.status = status
        self.code = code
        self.message = message
        self.outcome = error_outcome(code, status)

    def as_client_error(self) -> ClientError:
        """The same error as botocore raises it, for callers written against boto3's errors."""
        return ClientError(
            {
                "Error": {"Code": self.code, "Message": self.message},
                "ResponseMetadata": {"HTTPStatusCode": self.status},
            },
            self.operation,
        )


class WireClient:
    """JSON 1.0 calls through a boto3 client's endpoint, region and proxy settings, signed with the
    default credential chain's credentials (which every client of this process is built from).

    Raises (from ``call``): a ``WireError``, whatever went wrong.
    """

    def __init__(
        self,
        client: Any,
        target_prefix: str,
        connect_timeout: float = 5.0,
        read_timeout: float = 10.0,
        aws_clock: AwsClock | None = None,
        observe: Observer | None = None,
    ) -> None:
        self._endpoint = client.meta.endpoint_url.rstrip("/") + "/"
        self._region = client.meta.region_name
        # botocore's default chain (environment, profile, web identity, container, instance metadata),
        # as the boto3 clients resolve it: found at the first call, refreshed on its own
        self._session = botocore.session.get_session()
        self._credentials: Any = None
        self._credentials_lock = threading.Lock()
        self._prefix = target_prefix
        self._signer = JsonRequestSigner(self._endpoint, self._region, "dynamodb")
        self._http = KeepAliveConnections(
            self._endpoint,
            connect_timeout,
            read_timeout,
            ca_bundle=self._session.get_config_variable("ca_bundle"),
            proxy=proxy_for(self._endpoint, client.meta.config.proxies),
        )
        self._clock = aws_clock
        self._observe = observe

    def call(
        self,
        operation: str,
        request: dict[str, Any],
        report_as: str | None = None,
        parse: Callable[[str, bytes, str], dict[str, Any]] | None = None,
    ) -> tuple[dict[str, Any], int]:
        """The answer to ``operation`` (e.g. ``GetRecords``) and its size in bytes. Timed, and its
        outcome reported to ``observe`` as ``report_as`` (the boto3 name, e.g. ``get_records``).
        ``parse(operation, body, content_type)`` reads a successful answer (``parse_answer`` unless
        given): it raises ``BadAnswerError`` for one that is not the service's JSON object."""
        started, outcome = time.monotonic(), "ok"
        try:
            return self._call(operation, request, parse or parse_answer)
        except WireError as exc:
            outcome = exc.outcome
            raise
        finally:
            if self._observe is not None and report_as is not None:
                self._observe(report_as, outcome, time.monotonic() - started)

    def _call(
        self, operation: str, request: dict[str, Any], parse: Callable[[str, bytes, str], dict[str, Any]]
    ) -> tuple[dict[str, Any], int]:
        body = orjson.dumps(request)
        try:
            credentials = self._chain().get_frozen_credentials()
        except Exception as exc:  # noqa: BLE001 - any failure of the refresh (botocore's, STS's, a timeout)
            raise CredentialsError(f"{operation}: no credentials: {type(exc).__name__}: {exc}") from exc
        headers = self._signer.headers(
            f"{self._prefix}.{operation}", body, credentials.access_key, credentials.secret_key, credentials.token
        )
        try:
            answer = self._http.post(headers, body)
        except ConnectionFailedError as exc:
            raise NoAnswerError(f"{operation}: {exc}") from exc
        if self._clock is not None:
            self._clock.observe(answer.date)
        if answer.status != 200:
            raise _error(operation, answer.status, answer.body)
        return parse(operation, answer.body, answer.content_type), len(answer.body)

    def _chain(self) -> Any:
        """The credentials of the default chain, found once (raises when none can be found)."""
        if self._credentials is None:
            with self._credentials_lock:
                if self._credentials is None:
                    found = self._session.get_credentials()
                    if found is None:
                        raise LookupError("no AWS credentials in the environment, profile or role")
                    self._credentials = found
        return self._credentials


def parse_answer(operation: str, body: bytes, content_type: str) -> dict[str, Any]:
    """A successful answer's JSON object, parsed once (most of a full GetRecords page's CPU: ``make
    bench`` times it); ``BadAnswerError`` when the body is not one."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadAnswerError(f"{operation}: the answer is not JSON ({_describe(body, content_type)})") from exc
    if not isinstance(parsed, dict):
        raise BadAnswerError(f"{operation}: the answer is not a JSON object ({_describe(body, content_type)})")
    return parsed


def _describe(body: bytes, content_type: str) -> str:
    return f"{len(body)} bytes of {content_type or 'no content type'}: {body[:80]!r}"


def _error(operation: str, status: int, data: bytes) -> WireCallError:
    try:
        answer = orjson.loads(data)
    except orjson.JSONDecodeError:
        answer = {}
    if not isinstance(answer, dict):
        answer = {}
    code = str(answer.get("__type", "")).rsplit("#", 1)[-1]
    message = answer.get("message") or answer.get("Message") or data[:200].decode(errors="replace")
    return WireCallError(operation, status, code, str(message))


def proxy_for(endpoint_url: str, configured: dict[str, str] | None = None) -> str | None:
    """The HTTP proxy to reach ``endpoint_url`` through, as botocore chooses it: the client's
    ``proxies`` config, else ``HTTPS_PROXY`` / ``HTTP_PROXY``, unless ``NO_PROXY`` names the host."""
    parts = urlsplit(endpoint_url)
    if configured and configured.get(parts.scheme):
        return configured[parts.scheme]
    if urllib.request.proxy_bypass_environment(parts.hostname or ""):
        return None
    return urllib.request.getproxies_environment().get(parts.scheme)
