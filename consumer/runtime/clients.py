"""Vendor clients built from settings: boto3 for DynamoDB, Streams and the SQS / S3 dead-letter
destinations, opensearch-py for the sink.

Endpoints, region and credentials come from the standard AWS variables (``AWS_ENDPOINT_URL``,
``AWS_ENDPOINT_URL_DYNAMODB``, ``AWS_ENDPOINT_URL_DYNAMODB_STREAMS`` or its alias
``AWS_ENDPOINT_URL_DYNAMODBSTREAMS``, ``AWS_ENDPOINT_URL_SQS``, ``AWS_ENDPOINT_URL_S3``, ``AWS_REGION``), so the same
image runs against AWS and against the emulators.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

import boto3
from botocore.config import Config
from opensearchpy import OpenSearch, Urllib3AWSV4SignerAuth
from opensearchpy.serializer import JSONSerializer

from consumer.aws.clock import AwsClock
from consumer.config import Settings
from consumer.errors import ConfigError
from consumer.pipeline.attributes import number_to_json
from consumer.sink.in_flight import OverlappingConnection


@dataclass(frozen=True)
class AwsClients:
    """The DynamoDB and Streams clients, and AWS's clock as their answers show it (``consumer.aws.clock``)."""

    dynamodb: Any
    streams: Any
    clock: AwsClock = field(default_factory=AwsClock)


def aws_clients(region: str | None, streams_endpoint_url: str | None = None, pool_size: int = 32) -> AwsClients:
    """DynamoDB with botocore's standard retries. Streams without: shard consumers back off
    themselves, through one throttle gate per worker, and count every throttle they see. Every
    answer's ``Date`` feeds the clients' ``AwsClock`` (the wire calls' too, given it)."""
    session = _session(region)
    clients = AwsClients(
        session.client("dynamodb", config=_config(pool_size, {"mode": "standard", "max_attempts": 5})),
        session.client(
            "dynamodbstreams",
            config=_config(pool_size, {"mode": "standard", "total_max_attempts": 1}),
            endpoint_url=streams_endpoint_url,
        ),
    )
    watch_clock(clients.dynamodb, clients.clock)
    watch_clock(clients.streams, clients.clock)
    return clients


def watch_clock(client: Any, clock: AwsClock) -> None:
    """Hand the ``Date`` of every answer ``client`` receives to ``clock``."""

    def after_call(http_response: Any = None, **_: Any) -> None:
        headers = getattr(http_response, "headers", None)
        if headers is not None:
            clock.observe(headers.get("Date"))

    client.meta.events.register("after-call.*.*", after_call)


def dead_letter_client(service: Literal["sqs", "s3"], region: str | None, pool_size: int = 32) -> Any:
    """An SQS or S3 client for a dead-letter destination, created only when one is configured.

    Its endpoint comes from ``AWS_ENDPOINT_URL_SQS`` / ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``
    (botocore reads them). botocore's standard retries absorb throttling and 5xx before the
    destination reports a failure (and the shard consumer retries the batch).
    """
    retries = {"mode": "standard", "max_attempts": 5}
    return _session(region).client(service, config=_config(pool_size, retries, read_timeout=30))


def resolved_region(region: str | None) -> str:
    """``region``, or the one the AWS configuration gives (``~/.aws/config``, the profile). Raises
    ConfigError when there is none."""
    return str(_session(region).region_name)


def _session(region: str | None) -> boto3.session.Session:
    session = boto3.session.Session(region_name=region or None)  # an empty AWS_REGION is no region
    if not session.region_name:
        raise ConfigError("no AWS region: set AWS_REGION (e.g. AWS_REGION=eu-west-1)")
    return session


def _config(pool_size: int, retries: dict[str, Any], read_timeout: float = 10) -> Config:
    return Config(retries=retries, connect_timeout=5, read_timeout=read_timeout, max_pool_connections=pool_size)


class ExactJSONSerializer(JSONSerializer):
    """Reads JSON numbers exactly, into the Python types of the number policy
    (``consumer.pipeline.attributes.number_to_json``), so a document read back equals the item it was written
    from (docs/mapping.md)."""

    def loads(self, s: str) -> Any:
        return json.loads(s, parse_float=number_to_json, parse_int=number_to_json)


def opensearch_client(settings: Settings, pool_size: int = 32, exact_numbers: bool = False) -> OpenSearch:
    """A client that never retries by itself: the sink owns retries, backoff and their metrics.
    ``exact_numbers``: read documents with ``ExactJSONSerializer`` (audit, redrive).

    Auth: none, basic (username/password) or SigV4 for Amazon OpenSearch Service (``es``) or
    Serverless (``aoss``), signed with the default AWS credential chain, refreshed as it rotates.
    TLS certificates are verified unless CDC_OPENSEARCH_VERIFY_CERTS=false; CDC_OPENSEARCH_CA_BUNDLE
    names a private CA. Requests run the work armed by ``consumer.sink.in_flight.while_in_flight``.
    """
    options: dict[str, Any] = {}
    if settings.opensearch_auth == "basic":
        options["http_auth"] = (settings.opensearch_username, settings.opensearch_password)
    elif settings.opensearch_auth == "sigv4":
        options["http_auth"] = _sigv4_auth(settings)
    if settings.opensearch_ca_bundle is not None:
        options["ca_certs"] = str(settings.opensearch_ca_bundle)
    return OpenSearch(
        hosts=[settings.opensearch_url],
        timeout=settings.opensearch_timeout_seconds,
        max_retries=0,
        retry_on_timeout=False,
        pool_maxsize=pool_size,
        verify_certs=settings.opensearch_verify_certs,
        ssl_show_warn=settings.opensearch_verify_certs,
        serializer=ExactJSONSerializer() if exact_numbers else JSONSerializer(),
        connection_class=OverlappingConnection,
        **options,
    )


def _sigv4_auth(settings: Settings) -> Urllib3AWSV4SignerAuth:
    session = boto3.session.Session(region_name=settings.aws_region)
    credentials = session.get_credentials()
    if credentials is None:
        raise ConfigError("CDC_OPENSEARCH_AUTH=sigv4 but no AWS credentials were found (task role, IRSA or AWS_*)")
    if session.region_name is None:
        raise ConfigError("CDC_OPENSEARCH_AUTH=sigv4 needs a region: set AWS_REGION")
    return Urllib3AWSV4SignerAuth(credentials, session.region_name, settings.opensearch_sigv4_service)
