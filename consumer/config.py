"""Settings from ``CDC_*`` environment variables: the only module that reads the environment.

``load_settings(environ)`` validates every variable at once and raises one ``ConfigError`` that
lists each bad variable with its value and what is expected. AWS endpoints, region and
credentials are not ours: boto3 reads ``AWS_*`` the standard way (``AWS_ENDPOINT_URL``,
``AWS_ENDPOINT_URL_DYNAMODB``, ``AWS_ENDPOINT_URL_DYNAMODB_STREAMS``, ...); this module only
picks up the region and the ``AWS_ENDPOINT_URL_DYNAMODBSTREAMS`` alias.
The README's configuration table documents every field below.
"""

from __future__ import annotations

import difflib
import json
import re
import secrets
import socket
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from consumer.errors import ConfigError
from consumer.observability.redaction import REDACTED, redact
from consumer.pipeline.doc_ids import KeySchema
from consumer.pipeline.filtering import PatternError, validate_pattern
from consumer.pipeline.mapping import NO_TEMPLATE, IndexTemplate
from consumer.pipeline.projection_rules import ProjectionRules
from consumer.pipeline.routes import IndexName, Route, Routing, read_alias_of, single_route
from consumer.pipeline.shaping import FieldPath
from consumer.pipeline.transforms import Transform, load_transform

ENV_PREFIX = "CDC_"
SECRET_SETTINGS = frozenset({"opensearch_password", "mask_key"})  # shown as <redacted> by every output
_STREAM_ARN = re.compile(r"^arn:aws[\w-]*:dynamodb:[\w-]+:\d{12}:table/(?P<table>[\w.-]+)/stream/.+$")
_INDEX_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_STREAM_RETENTION_SECONDS = 86_400
_MISSING_SOURCE = "set CDC_TABLE_NAME (the table whose stream to read) or CDC_STREAM_ARN"


_SQS_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
_SQS_QUEUE_URL = re.compile(r"^https?://[^\s/]+/\d{12}/[A-Za-z0-9_-]{1,80}$")
_S3_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_DESTINATION_FORMS = (
    "expected file, file://<path>, sqs:<queue URL or name> or s3://<bucket>[/<prefix>], e.g. "
    "sqs:orders-cdc-dead-letters or s3://example-cdc-dead-letters/orders"
)


@dataclass(frozen=True)
class DeadLetterDestination:
    """Where dead letters go: ``kind`` file (``location`` a path), sqs (a queue URL or name) or s3 (a bucket)."""

    kind: Literal["file", "sqs", "s3"]
    location: str
    prefix: str = ""

    def __str__(self) -> str:
        if self.kind == "file":
            return f"file://{self.location}"
        return f"sqs:{self.location}" if self.kind == "sqs" else f"s3://{self.location}/{self.prefix}".rstrip("/")


def parse_dead_letter_destination(text: str) -> DeadLetterDestination | None:
    """``CDC_DEAD_LETTER_DESTINATION`` parsed; None for ``file`` or empty (the file at CDC_DEAD_LETTER_PATH).

    Raises:
        ValueError: naming the accepted forms.
    """
    text = text.strip()
    if text in ("", "file"):
        return None
    if text.startswith("file://") and len(text) > len("file://"):
        return DeadLetterDestination("file", text[len("file://") :])
    if text.startswith("sqs:"):
        queue = text[len("sqs:") :]
        if queue.endswith(".fifo"):
            raise ValueError("FIFO queues are not supported: use a standard SQS queue")
        if _SQS_QUEUE_NAME.match(queue) or _SQS_QUEUE_URL.match(queue):
            return DeadLetterDestination("sqs", queue)
        raise ValueError(f"not an SQS queue URL or name (letters, digits, - and _, ≤ 80); {_DESTINATION_FORMS}")
    if text.startswith("s3://"):
        bucket, _, prefix = text[len("s3://") :].partition("/")
        if not _S3_BUCKET.match(bucket):
            raise ValueError(f"{bucket!r} is not an S3 bucket name; {_DESTINATION_FORMS}")
        return DeadLetterDestination("s3", bucket, prefix.strip("/"))
    raise ValueError(_DESTINATION_FORMS)


def _state_pattern_problem(pattern: dict[str, Any]) -> str | None:
    """Why a pattern cannot judge an item's state, or None."""
    unknown = sorted(set(pattern) - {"dynamodb"})
    if unknown:
        return f"it names {', '.join(unknown)}, which an item's state does not have"
    inner = pattern["dynamodb"]
    others = sorted(set(inner) - {"NewImage", "Keys"}) if isinstance(inner, dict) else ["dynamodb"]
    if others:
        return f"it names dynamodb.{', dynamodb.'.join(others)}, which an item's state does not have"
    return None


_TRANSFORM_SPEC = r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$"
MAX_ROUTES = 50  # routes are a metric label: a bounded set


def _read_json_or_file(value: str, expected: str) -> Any:
    """``value`` as JSON, or the contents of the JSON or YAML file it names (``.yaml`` / ``.yml``).

    Raises:
        ValueError: saying what is wrong, and what ``expected`` is.
    """
    text = value.strip()
    if text[:1] in ("{", "["):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ValueError(f"not JSON ({exc}); expected {expected}") from None
    try:
        content = Path(text).read_text()
    except OSError as exc:
        raise ValueError(f"neither JSON nor a readable file: {exc.strerror or exc}; expected {expected}") from None
    is_yaml = text.endswith((".yaml", ".yml"))
    try:
        return yaml.safe_load(content) if is_yaml else json.loads(content)
    except (ValueError, yaml.YAMLError) as exc:
        raise ValueError(f"{text}: not {'YAML' if is_yaml else 'JSON'} ({exc})") from None


class RouteSpec(BaseModel):
    """One route of ``CDC_ROUTES`` (``consumer.pipeline.routes``). Unset field rules, transform and
    index template are the global ones (``CDC_INCLUDE_FIELDS``, ``CDC_TRANSFORM``, ...)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    match: tuple[dict[str, Any], ...] = ()
    index: str = Field(max_length=255)
    max_indices: int = Field(100, ge=1, le=10_000)
    read_alias: str | None = Field(None, max_length=255, pattern=_INDEX_NAME.pattern)
    include_fields: tuple[str, ...] | None = None
    drop_fields: tuple[str, ...] | None = None
    mask_fields: tuple[str, ...] | None = None
    transform: str | None = Field(None, pattern=_TRANSFORM_SPEC)
    index_template: IndexTemplate | None = None

    @field_validator("match", mode="before")
    @classmethod
    def _patterns(cls, value: Any) -> Any:
        patterns = value if isinstance(value, list | tuple) else [value]
        for position, pattern in enumerate(patterns):
            try:
                validate_pattern(pattern, f"match pattern {position}")
            except PatternError as exc:
                raise ValueError(str(exc)) from None
            problem = _state_pattern_problem(pattern)
            if problem:
                raise ValueError(
                    f"match pattern {position}: {problem}; a route judges an item's state (Keys, NewImage)"
                )
        return tuple(patterns)

    @field_validator("index")
    @classmethod
    def _index(cls, value: str) -> str:
        IndexName.parse(value)  # raises ValueError naming what is wrong
        return value

    @field_validator("include_fields", "drop_fields", "mask_fields")
    @classmethod
    def _paths(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for text in value or ():
            FieldPath.parse(text)
        return value

    @field_validator("index_template", mode="before")
    @classmethod
    def _template(cls, value: Any) -> Any:
        return _index_template(value)


def _index_template(value: Any) -> Any:
    """An ``IndexTemplate`` from JSON text, a file holding it, or its parsed body."""
    if isinstance(value, IndexTemplate) or value is None:
        return value
    body = _read_json_or_file(value, '{"settings": …, "mappings": …}') if isinstance(value, str) else value
    try:
        return IndexTemplate.from_json(body)
    except ConfigError as exc:
        raise ValueError(str(exc).removeprefix("CDC_INDEX_TEMPLATE: ")) from None


def _route_problems(routes: tuple[RouteSpec, ...]) -> str | None:
    """What makes a list of routes unusable as a whole, or None."""
    if not routes:
        return "expected a non-empty list of routes"
    if len(routes) > MAX_ROUTES:
        return f"{len(routes)} routes: at most {MAX_ROUTES} (a route is a metric label)"
    names = [route.name for route in routes]
    doubled = sorted({name for name in names if names.count(name) > 1})
    if doubled:
        return f"route names must be unique: {', '.join(doubled)}"
    fixed = {route.index for route in routes if "${" not in route.index}
    aliases = {read_alias_of(index) for index in fixed} | {route.read_alias for route in routes if route.read_alias}
    clash = sorted(fixed & aliases)
    if clash:
        return f"{', '.join(clash)}: an index name that is also a read alias"
    return None


def _default_worker_id() -> str:
    """The host's name and 8 random hex digits: unique per process even where every container has
    pid 1 and shares the node's name (host networking), readable in the lease table."""
    return f"{socket.gethostname()}-{secrets.token_hex(4)}"


class Settings(BaseModel):
    """Validated settings. Immutable; field ``x`` comes from ``CDC_X``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    table_name: str | None = Field(None, min_length=3, max_length=255, pattern=r"^[\w.-]+$")
    stream_arn: str | None = Field(None, pattern=_STREAM_ARN.pattern)
    lease_table: str | None = Field(None, min_length=3, max_length=255, pattern=r"^[\w.-]+$")
    initial_position: Literal["TRIM_HORIZON", "LATEST"] = "TRIM_HORIZON"
    opensearch_url: str | None = Field(None, pattern=r"^https?://[^\s/]+(/.*)?$")
    opensearch_index: str | None = Field(None, max_length=255, pattern=_INDEX_NAME.pattern)
    opensearch_read_alias: str | None = Field(None, max_length=255, pattern=_INDEX_NAME.pattern)
    mapping_mode: Literal["managed", "dynamic"] = "managed"
    index_template: IndexTemplate | None = None
    bulk_max_bytes: int = Field(5 * 1024 * 1024, ge=64 * 1024, le=1024 * 1024 * 1024)
    tombstone_retention_seconds: int = Field(172_800, le=31_536_000)
    tombstone_reap_interval_seconds: float = Field(3600.0, ge=1, le=604_800)
    opensearch_timeout_seconds: float = Field(30.0, gt=0, le=600)
    opensearch_auth: Literal["none", "basic", "sigv4"] = "none"
    opensearch_username: str | None = None
    opensearch_password: str | None = Field(None, repr=False)
    opensearch_sigv4_service: Literal["es", "aoss"] = "es"
    opensearch_verify_certs: bool = True
    opensearch_allow_plaintext_auth: bool = False
    opensearch_ca_bundle: Path | None = None
    worker_id: str = Field(default_factory=_default_worker_id, min_length=1, max_length=256)
    metrics_host: str = "0.0.0.0"
    metrics_port: int = Field(9400, ge=0, le=65535)
    failover_seconds: float = Field(10.0, ge=1, le=3600)
    max_records_per_read: int = Field(1000, ge=1, le=1000)
    parallelization_factor: int = Field(1, ge=1, le=10)
    poll_interval_seconds: float = Field(1.0, gt=0, le=60)
    idle_poll_max_seconds: float | None = Field(None, gt=0, le=300)
    shard_threads: int = Field(16, ge=1, le=256)
    max_leases_per_worker: int | None = Field(None, ge=1, le=100_000)
    max_buffered_bytes: int = Field(64 * 1024 * 1024, ge=1024 * 1024, le=16 * 1024**3)
    shard_sync_interval_seconds: float = Field(60.0, ge=1, le=3600)
    shutdown_timeout_seconds: float = Field(20.0, gt=0, le=600)
    retry_base_seconds: float = Field(0.1, gt=0, le=60)
    retry_max_delay_seconds: float = Field(10.0, gt=0, le=600)
    max_retry_attempts: int = Field(-1, ge=-1, le=100_000)
    max_record_age_seconds: int = Field(-1, ge=-1, le=604_800)
    dead_letter_on_outage: bool = False
    dead_letter_path: Path = Path("cdc-dead-letters.jsonl")
    dead_letter_destination: DeadLetterDestination | None = None
    event_names: tuple[Literal["INSERT", "MODIFY", "REMOVE"], ...] = ("INSERT", "MODIFY", "REMOVE")
    filter_patterns: tuple[dict[str, Any], ...] = ()
    filter_mode: Literal["state", "events"] = "state"
    ttl_deletes: Literal["delete", "skip", "mark"] = "delete"
    include_fields: tuple[str, ...] = ()
    drop_fields: tuple[str, ...] = ()
    mask_fields: tuple[str, ...] = ()
    routes: tuple[RouteSpec, ...] = ()
    transform: str | None = Field(None, pattern=_TRANSFORM_SPEC)
    mask_key: str | None = Field(None, repr=False)
    mask_key_file: Path | None = None
    mask_unkeyed: bool = False
    dead_letter_raw_records: bool = False
    backfill: Literal["off", "on-new-index"] = "off"
    backfill_segments: int | None = Field(None, ge=1, le=1_000_000)
    backfill_max_read_units: float = Field(1000.0, gt=0, le=1_000_000)
    backfill_consistent_read: bool = True
    index_generations: Literal["off", "on"] = "off"
    reindex: Literal["off", "auto"] = "off"
    generation_retention_seconds: float = Field(604_800.0, ge=0, le=31_536_000)
    generation_check_seconds: float = Field(30.0, ge=0.1, le=3600)
    kcl_lease_table: str | None = None
    kcl_batch_timeout_seconds: float = Field(300.0, gt=0, le=86_400)
    shard_metrics: Literal["on", "off"] = "on"
    metrics_emf: Literal["off", "on"] = "off"
    metrics_emf_namespace: str = Field("CdcConsumer", pattern=r"^[A-Za-z0-9_./#:-]{1,255}$")
    metrics_emf_interval_seconds: float = Field(60.0, ge=1, le=3600)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"
    log_library_debug: bool = False
    gc_young_threshold: int = Field(100_000, ge=0, le=10_000_000)
    # Not CDC_ variables: AWS_REGION (or AWS_DEFAULT_REGION), which the AWS SDKs also read; and
    # AWS_ENDPOINT_URL_DYNAMODBSTREAMS, an alias of the SDK's AWS_ENDPOINT_URL_DYNAMODB_STREAMS.
    aws_region: str | None = Field(None, exclude=True)
    streams_endpoint_url: str | None = Field(None, exclude=True)
    # Baked into the image at build time (deploy/Dockerfile: ARG GIT_COMMIT), for cdc_build_info.
    build_commit: str = Field("unknown", exclude=True)

    @field_validator("event_names", "include_fields", "drop_fields", "mask_fields", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("include_fields", "drop_fields", "mask_fields")
    @classmethod
    def _field_paths(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for text in value:
            FieldPath.parse(text)  # raises ValueError naming the bad path
        return value

    @field_validator("tombstone_retention_seconds")
    @classmethod
    def _retention(cls, value: int) -> int:
        if value < _STREAM_RETENTION_SECONDS:
            raise ValueError(
                f"must be ≥ {_STREAM_RETENTION_SECONDS} (24 h): a tombstone must outlive the stream's 24 h retention "
                "(plus the longest pause of a zombie worker), or a late replay of a record still in the stream "
                "would resurrect the deleted item once its tombstone is reaped"
            )
        return value

    @field_validator("index_template", mode="before")
    @classmethod
    def _template(cls, value: Any) -> Any:
        return _index_template(value)

    @field_validator("routes", mode="before")
    @classmethod
    def _routes(cls, value: Any) -> Any:
        routes = _read_json_or_file(value, "a list of routes (docs/routes.md)") if isinstance(value, str) else value
        if isinstance(routes, dict) and "routes" in routes:
            routes = routes["routes"]
        if not isinstance(routes, list):
            raise ValueError("expected a list of routes (docs/routes.md)")
        return tuple(routes)

    @field_validator("routes")
    @classmethod
    def _whole_routes(cls, value: tuple[RouteSpec, ...]) -> tuple[RouteSpec, ...]:
        problem = _route_problems(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("dead_letter_destination", mode="before")
    @classmethod
    def _destination(cls, value: Any) -> Any:
        return parse_dead_letter_destination(value) if isinstance(value, str) else value

    @field_validator("filter_patterns", mode="before")
    @classmethod
    def _json_patterns(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            parsed = json.loads(value)
        except ValueError as exc:
            raise ValueError(f"not JSON ({exc}); expected a pattern object or a list of them") from None
        patterns = parsed if isinstance(parsed, list) else [parsed]
        for index, pattern in enumerate(patterns):
            try:
                validate_pattern(pattern, f"pattern {index}")
            except PatternError as exc:
                raise ValueError(str(exc)) from None
        return tuple(patterns)

    @model_validator(mode="after")
    def _check_masking(self) -> Settings:
        if not self.mask_fields and not any(route.mask_fields for route in self.routes):
            return self
        if self.mask_key is not None and self.mask_key_file is not None:
            raise ValueError("set CDC_MASK_KEY or CDC_MASK_KEY_FILE, not both")
        if self.mask_key is None and self.mask_key_file is None and not self.mask_unkeyed:
            raise ValueError(
                "CDC_MASK_FIELDS (or a route's mask_fields) needs a secret key: set CDC_MASK_KEY_FILE (a file holding at least 16 bytes, e.g. a "
                "mounted Kubernetes/ECS secret) or CDC_MASK_KEY; without a key a dictionary of likely values (emails, "
                "phone numbers) undoes the masking. CDC_MASK_UNKEYED=true accepts that risk explicitly"
            )
        if (self.mask_key is not None or self.mask_key_file is not None) and len(self.mask_secret or b"") < 16:
            raise ValueError("the masking key (CDC_MASK_KEY or CDC_MASK_KEY_FILE) must be at least 16 bytes long")
        return self

    @model_validator(mode="after")
    def _check_filters(self) -> Settings:
        if self.filter_mode != "state":
            return self
        if set(self.event_names) != {"INSERT", "MODIFY", "REMOVE"}:
            raise ValueError(
                "CDC_EVENT_NAMES drops events, which keeps the index from following the table's state: "
                "set CDC_FILTER_MODE=events to filter events (Lambda's behaviour), or unset CDC_EVENT_NAMES"
            )
        for index, pattern in enumerate(self.filter_patterns):
            problem = _state_pattern_problem(pattern)
            if problem:
                raise ValueError(
                    f"CDC_FILTER_PATTERNS pattern {index}: {problem}; with CDC_FILTER_MODE=state (the default) a "
                    "pattern judges an item's state: name only dynamodb.NewImage and dynamodb.Keys, or set "
                    "CDC_FILTER_MODE=events to filter events as Lambda does"
                )
        return self

    @model_validator(mode="after")
    def _check_together(self) -> Settings:
        """The rules between settings, every broken one reported at once (not one per run)."""
        problems: list[str] = []
        has_source = bool(self.table_name or self.stream_arn)  # the derived names need one
        if not has_source:
            problems.append(_MISSING_SOURCE)
        if has_source and not self.opensearch_index and not _INDEX_NAME.match(self.index_name):
            problems.append(
                f"the index name {self.index_name!r} derived from the table name is not a valid OpenSearch "
                "index name: set CDC_OPENSEARCH_INDEX"
            )
        if not self.dead_letter_on_outage and (self.max_retry_attempts >= 0 or self.max_record_age_seconds >= 0):
            problems.append(
                "CDC_MAX_RETRY_ATTEMPTS / CDC_MAX_RECORD_AGE_SECONDS only end an OpenSearch outage (every retriable "
                "failure is one: the records themselves are fine) and then dead-letter healthy records: set "
                "CDC_DEAD_LETTER_ON_OUTAGE=true to opt in, or unset them to wait out outages (the default)"
            )
        if self.idle_poll_max_seconds is not None and self.idle_poll_max_seconds < self.poll_interval_seconds:
            problems.append(
                "CDC_IDLE_POLL_MAX_SECONDS must be at least CDC_POLL_INTERVAL_SECONDS: it caps the backoff of idle polls"
            )
        if self.opensearch_url and "@" in urlsplit(self.opensearch_url).netloc:
            problems.append(
                "CDC_OPENSEARCH_URL holds credentials (user:password@host), and a URL is printed and logged: put "
                "them in CDC_OPENSEARCH_USERNAME / CDC_OPENSEARCH_PASSWORD with CDC_OPENSEARCH_AUTH=basic"
            )
        if self.opensearch_auth == "basic" and not (self.opensearch_username and self.opensearch_password):
            problems.append(
                "CDC_OPENSEARCH_AUTH=basic needs CDC_OPENSEARCH_USERNAME and CDC_OPENSEARCH_PASSWORD (one is not set)"
            )
        if self.opensearch_auth != "basic" and (self.opensearch_username or self.opensearch_password):
            problems.append(
                f"CDC_OPENSEARCH_USERNAME / CDC_OPENSEARCH_PASSWORD are set but CDC_OPENSEARCH_AUTH="
                f"{self.opensearch_auth}: set CDC_OPENSEARCH_AUTH=basic to use them, or unset them"
            )
        plaintext = (self.opensearch_url or "").startswith("http://")
        if self.opensearch_auth == "basic" and plaintext and not self.opensearch_allow_plaintext_auth:
            problems.append(
                "CDC_OPENSEARCH_AUTH=basic over http:// sends the password in clear: use https://, or set "
                "CDC_OPENSEARCH_ALLOW_PLAINTEXT_AUTH=true for a network where that is acceptable (a local test)"
            )
        if self.retry_base_seconds > self.retry_max_delay_seconds:
            problems.append(
                f"CDC_RETRY_BASE_SECONDS={self.retry_base_seconds:g} is above CDC_RETRY_MAX_DELAY_SECONDS="
                f"{self.retry_max_delay_seconds:g}: the first backoff step cannot exceed the cap"
            )
        if self.routes and (self.opensearch_index or self.opensearch_read_alias):
            problems.append(
                "CDC_OPENSEARCH_INDEX / CDC_OPENSEARCH_READ_ALIAS name the one index of a table without routes; with "
                "CDC_ROUTES each route names its index (its read alias is <index>-live, or the route's read_alias)"
            )
        if has_source and self.read_alias_name == self.index_name:
            problems.append(
                f"CDC_OPENSEARCH_READ_ALIAS must differ from the index name {self.index_name!r}: "
                "the alias hides the tombstones the index holds"
            )
        if problems:
            raise ValueError("\n  ".join(problems))
        return self

    @property
    def source_table(self) -> str:
        """The table that owns the stream: CDC_TABLE_NAME, or the table named in CDC_STREAM_ARN."""
        if self.table_name:
            return self.table_name
        match = _STREAM_ARN.match(self.stream_arn or "")
        assert match is not None  # guaranteed by the field pattern
        return match.group("table")

    @property
    def lease_table_name(self) -> str:
        return self.lease_table or f"{self.source_table}-cdc-leases"

    @property
    def index_name(self) -> str:
        return self.opensearch_index or self.source_table.lower()

    @property
    def read_alias_name(self) -> str:
        """The filtered alias applications search: CDC_OPENSEARCH_READ_ALIAS, or ``<index>-live``."""
        return self.opensearch_read_alias or read_alias_of(self.index_name)

    @property
    def dead_letters(self) -> DeadLetterDestination:
        """CDC_DEAD_LETTER_DESTINATION, or the file at CDC_DEAD_LETTER_PATH when it is unset or ``file``."""
        return self.dead_letter_destination or DeadLetterDestination("file", str(self.dead_letter_path))

    @property
    def secret_values(self) -> tuple[str | bytes | None, ...]:
        """The values no output may show (``consumer.observability.redaction.register_secrets``)."""
        try:
            mask = self.mask_secret
        except ValueError:
            mask = None  # unreadable: reported by the worker's start-up; nothing to hide yet
        return (self.opensearch_password, self.mask_key, mask)

    @property
    def mask_secret(self) -> bytes | None:
        """The masking key (CDC_MASK_KEY, or the contents of CDC_MASK_KEY_FILE), or None (unkeyed)."""
        if self.mask_key is not None:
            return self.mask_key.encode()
        if self.mask_key_file is not None:
            try:
                return self.mask_key_file.read_bytes().strip()
            except OSError as exc:
                raise ValueError(
                    f"CDC_MASK_KEY_FILE={str(self.mask_key_file)!r} cannot be read: {exc.strerror}"
                ) from None
        return None

    @property
    def idle_poll_ceiling_seconds(self) -> float:
        """CDC_IDLE_POLL_MAX_SECONDS, or twice the poll interval (a new change on an idle shard is
        then read within two poll intervals)."""
        return self.idle_poll_max_seconds or 2 * self.poll_interval_seconds


def load_settings(environ: Mapping[str, str], require_opensearch: bool = True) -> tuple[Settings, list[str]]:
    """Validate the ``CDC_*`` variables of ``environ``.

    Returns the settings and warnings (unknown ``CDC_*`` variables, most likely typos).
    Raises ConfigError naming every bad variable, its value and what is expected.
    ``require_opensearch=False`` serves commands that only read the lease table.
    """
    known = set(Settings.model_fields)
    values: dict[str, str] = {}
    warnings = []
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        field = name[len(ENV_PREFIX) :].lower()
        if field in known and field not in _NOT_CDC_VARIABLES:
            values[field] = value
        else:
            warnings.append(f"{name} is not a setting of this consumer and is ignored{_did_you_mean(name, known)}")
    aws = {
        "aws_region": environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION"),
        # botocore derives the variable from the service id "DynamoDB Streams"; accept the
        # spelling without the underscore too, unless the SDK's own one is set (it wins).
        "streams_endpoint_url": None
        if environ.get("AWS_ENDPOINT_URL_DYNAMODB_STREAMS")
        else environ.get("AWS_ENDPOINT_URL_DYNAMODBSTREAMS"),
    }
    if "worker_id" not in values:
        task_id = _ecs_task_id(environ, warnings)
        if task_id:
            values["worker_id"] = task_id
    aws["build_commit"] = environ.get("CONSUMER_GIT_COMMIT") or "unknown"
    missing_sink = require_opensearch and not values.get("opensearch_url")
    try:
        settings = Settings.model_validate({**values, **aws})
    except ValidationError as exc:
        problems = _describe(exc, values)
        if not values.get("table_name") and not values.get("stream_arn") and _MISSING_SOURCE not in problems:
            # pydantic skips the model check when a field is invalid: report a missing source anyway
            problems += f"\n  {_MISSING_SOURCE}"
        raise ConfigError(problems + (f"\n  {_MISSING_SINK}" if missing_sink else "")) from None
    if missing_sink:
        raise ConfigError(f"invalid configuration:\n  {_MISSING_SINK}")
    return settings, sorted(warnings)


_NOT_CDC_VARIABLES = ("aws_region", "streams_endpoint_url", "build_commit")


def _did_you_mean(name: str, known: set[str]) -> str:
    """``: did you mean CDC_X?`` for the closest setting's name, else a hint that it may be a typo."""
    names = [ENV_PREFIX + field.upper() for field in known if field not in _NOT_CDC_VARIABLES]
    close = difflib.get_close_matches(name.upper(), names, n=1, cutoff=0.75)
    return f": did you mean {close[0]}?" if close else " (typo?)"


def _ecs_task_id(environ: Mapping[str, str], warnings: list[str]) -> str | None:
    """On ECS, the task id (the last part of the task ARN, from the task metadata endpoint v4): a
    worker id that names the task in the lease table and in the console. None elsewhere."""
    endpoint = environ.get("ECS_CONTAINER_METADATA_URI_V4")
    if not endpoint:
        return None
    try:
        with urllib.request.urlopen(f"{endpoint}/task", timeout=2) as answer:
            task_arn = json.loads(answer.read())["TaskARN"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        warnings.append(
            f"ECS task metadata unreadable ({exc}): the worker id is <hostname>-<random>; set CDC_WORKER_ID"
        )
        return None
    return str(task_arn).rsplit("/", 1)[-1]


_MISSING_SINK = "CDC_OPENSEARCH_URL=(not set): required, e.g. https://search-domain.eu-west-1.es.amazonaws.com"


def _describe(exc: ValidationError, values: Mapping[str, str]) -> str:
    lines = ["invalid configuration:"]
    for error in exc.errors():
        if error["loc"]:
            field = str(error["loc"][0])
            variable = ENV_PREFIX + field.upper()
            shown = (
                (REDACTED if field in SECRET_SETTINGS else repr(redact(values[field])))
                if field in values
                else "(not set)"
            )
            lines.append(f"  {variable}={shown}: {error['msg'].removeprefix('Value error, ')}")
        else:
            lines.append(f"  {error['msg'].removeprefix('Value error, ')}")
    return "\n".join(lines)


def projection_rules(settings: Settings, schema: KeySchema) -> ProjectionRules:
    """The projection rules the settings describe (filters, TTL handling, the fields to keep, drop and
    mask): one place, for the workers, the backfill, audit and redrive."""
    return ProjectionRules(
        event_names=frozenset(settings.event_names),
        patterns=settings.filter_patterns,
        filter_mode=settings.filter_mode,
        ttl_deletes=settings.ttl_deletes,
        include_fields=tuple(FieldPath.parse(text) for text in settings.include_fields),
        drop_fields=tuple(FieldPath.parse(text) for text in settings.drop_fields),
        mask_fields=tuple(FieldPath.parse(text) for text in settings.mask_fields),
        mask_key=settings.mask_secret,
        key_names=frozenset(attribute.name for attribute in schema.attributes),
    )


def document_key_schema(settings: Settings, schema: KeySchema) -> KeySchema:
    """The table's key schema as document ids use it: the key attributes ``CDC_MASK_FIELDS`` names
    (as top-level fields) masked with the masking key (``consumer.pipeline.doc_ids``)."""
    names = _masked_key_names(settings)
    return schema.masking(names, settings.mask_secret) if names else schema


def routing(settings: Settings, schema: KeySchema) -> Routing:
    """The routes the settings describe (``CDC_ROUTES``, or the one route to the table's index), with
    their transforms imported: the same for the workers, the KCL processor, backfill, audit and redrive.

    Raises:
        ConfigError: naming the route whose transform cannot be imported or whose mask names a key
            attribute (mask key attributes with CDC_MASK_FIELDS: ids are the same in every index).
    """
    rules = projection_rules(settings, schema)
    transforms: dict[str, Transform] = {}

    def transform(spec: str | None, variable: str) -> Transform | None:
        if spec is None:
            return None
        if spec not in transforms:
            try:
                transforms[spec] = load_transform(spec)
            except ValueError as exc:
                raise ConfigError(f"{variable}={spec!r}: {exc}") from None
        return transforms[spec]

    template = settings.index_template or NO_TEMPLATE
    if not settings.routes:
        return single_route(
            settings.source_table, settings.index_name, rules, transform(settings.transform, "CDC_TRANSFORM"), template
        )
    routes = []
    for spec in settings.routes:
        where = f"CDC_ROUTES route {spec.name!r}"
        masked_keys = sorted(
            {FieldPath.parse(path).segments[0][0] for path in spec.mask_fields or ()} & rules.key_names
        )
        if masked_keys and not set(masked_keys) <= _masked_key_names(settings):
            raise ConfigError(
                f"{where}: mask_fields names key attribute {', '.join(masked_keys)}: mask key attributes with "
                "CDC_MASK_FIELDS, so that an item has the same document id in every index"
            )
        routes.append(
            Route(
                spec.name,
                IndexName.parse(spec.index),
                rules.with_fields(spec.include_fields, spec.drop_fields, spec.mask_fields),
                spec.match,
                transform(spec.transform or settings.transform, f"{where} transform"),
                max_indices=spec.max_indices,
                read_alias=spec.read_alias,
                template=spec.index_template or template,
            )
        )
    return Routing(settings.source_table, rules, tuple(routes), rules.key_names)


def _masked_key_names(settings: Settings) -> frozenset[str]:
    """The top-level attributes ``CDC_MASK_FIELDS`` names: masked in document ids when they are keys."""
    return frozenset(
        path.segments[0][0]
        for path in map(FieldPath.parse, settings.mask_fields)
        if len(path.segments) == 1 and not path.segments[0][1]
    )
