"""The embedded metric format document: what CloudWatch needs to extract each metric, gauges as read
and counters as their growth between two lines."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from consumer.observability.emf import KEY_METRICS, emf_document, read_samples
from consumer.observability.metrics import Metrics


def test_a_document_declares_every_value_it_carries_and_counts_only_the_growth_of_counters():
    previous = {"cdc_records_processed_total": 100.0, "cdc_leases_held": 3.0}
    current = {"cdc_records_processed_total": 160.0, "cdc_leases_held": 2.0, "cdc_worker_iterator_age_max_seconds": 4.5}
    document = emf_document("CdcConsumer", {"Table": "orders", "WorkerId": "w-1"}, current, previous, 1_700_000_000_000)

    (directive,) = document["_aws"]["CloudWatchMetrics"]
    assert document["_aws"]["Timestamp"] == 1_700_000_000_000
    assert directive["Namespace"] == "CdcConsumer"
    assert directive["Dimensions"] == [["Table"], ["Table", "WorkerId"]]
    assert {metric["Name"] for metric in directive["Metrics"]} == {name for name, _, _, _ in KEY_METRICS}
    assert all(isinstance(document[metric["Name"]], float) for metric in directive["Metrics"])
    assert (document["Table"], document["WorkerId"]) == ("orders", "w-1")
    assert document["RecordsProcessed"] == 60.0  # grown by, not the running total
    assert document["LeasesHeld"] == 2.0 and document["IteratorAgeMax"] == 4.5
    assert document["RecordsDeadLettered"] == 0.0  # absent: 0


def test_a_counter_read_lower_than_before_counts_nothing_rather_than_a_negative():
    document = emf_document("N", {"Table": "t"}, {"cdc_bulk_requests_total": 5.0}, {"cdc_bulk_requests_total": 9.0}, 0)
    assert document["BulkRequests"] == 0.0


def test_the_samples_are_read_from_the_workers_registry():
    metrics = Metrics(CollectorRegistry())
    metrics.records_processed.labels(event="INSERT", outcome="applied", route="default").inc(7)
    metrics.records_processed.labels(event="REMOVE", outcome="stale", route="default").inc(2)
    metrics.leases_held.set(4)
    samples = read_samples(metrics.registry)
    assert samples["cdc_records_processed_total"] == 9.0 and samples["cdc_leases_held"] == 4.0
    assert samples["cdc_records_dead_lettered_total"] == 0.0
