"""Versions taken from a read's time (backfill, audit repairs, redrive) with the host clock running
ahead of AWS's: the read time comes from AWS's clock (the ``Date`` of its answers) instead, so a
repair can never beat a change made after its read. moto runs on this host, so its ``Date`` is the
true time here; the workers' host clock is made to run 30 s ahead."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from consumer.aws.clock import AwsClock
from consumer.backfill.scan import ReadRate, SegmentScan
from consumer.commands.reconcile import Reconciler
from consumer.config import load_settings
from consumer.pipeline.repair import repair_version
from consumer.runtime.clients import aws_clients, watch_clock
from tests.support.emulators import aws_env
from tests.support.tables import create_table

pytestmark = pytest.mark.integration
AHEAD = 30.0


@pytest.fixture
def skewed(moto, monkeypatch):
    """AWS clients (through moto) and an AwsClock fed by their answers, on a host 30 s ahead."""
    for name, value in aws_env(moto.url).items():
        monkeypatch.setenv(name, value)
    aws = aws_clients("us-east-1")
    clock = AwsClock(wall=lambda: time.time() + AHEAD)
    watch_clock(aws.dynamodb, clock)
    return aws, clock


def test_a_redrive_reads_on_aws_clock_when_the_hosts_runs_ahead(skewed, osmem, table_name):
    # GIVEN an item, and a reconciler on a host whose clock is 30 s ahead of AWS's
    aws, clock = skewed
    create_table(aws.dynamodb, table_name)
    key = {"pk": {"S": "a"}, "sk": {"N": "1"}}
    aws.dynamodb.put_item(TableName=table_name, Item={**key, "status": {"S": "paid"}})
    settings, _ = load_settings(
        {"CDC_TABLE_NAME": table_name, "CDC_OPENSEARCH_URL": osmem.url, "AWS_REGION": "us-east-1"}
    )
    reconciler = dataclasses.replace(Reconciler.from_settings(settings), dynamodb=aws.dynamodb, clock=clock)

    # WHEN it reads the item for a repair
    read_at, item = reconciler.get_item(key)

    # THEN the read time is no later than AWS's clock: a change made right after the read, in the
    # same second, gets a version above the repair's (P: the repair never beats a newer change)
    assert item is not None
    assert read_at <= time.time()
    assert repair_version(read_at) < int(time.time()) << 31


def test_a_backfill_page_reads_on_aws_clock_when_the_hosts_runs_ahead(skewed, table_name):
    # GIVEN a table, and a segment scan on a host whose clock is 30 s ahead of AWS's, with no AWS
    # answer seen yet (the page's own answer bounds its time)
    aws, _ = skewed
    create_table(aws.dynamodb, table_name)
    aws.dynamodb.put_item(TableName=table_name, Item={"pk": {"S": "a"}, "sk": {"N": "1"}})
    fresh = AwsClock(wall=lambda: time.time() + AHEAD)
    scan = SegmentScan(aws.dynamodb, table_name, ReadRate(1000), read_margin=1.0, aws_clock=fresh)

    # WHEN a page is read
    (page,) = list(scan.pages(0, 1, None, threading.Event()))

    # THEN its read time is no later than AWS's clock, and the host's lead is known
    assert len(page.items) == 1
    assert page.read_at <= time.time()
    assert fresh.host_ahead_seconds == pytest.approx(AHEAD, abs=1.5)
