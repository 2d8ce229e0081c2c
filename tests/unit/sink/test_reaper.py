"""The tombstone reaper's pure part: which tombstones are due, and how they are deleted."""

from __future__ import annotations

import orjson

from consumer.sink.reaper import ReapDelete, ReapResult, cutoff, encode_reap, plan_reap, reap_query, summarize_reap

NOW = 1_700_000_000.7
RETENTION = 172_800


def hit(doc_id, deleted_at, deleted=True, seq_no=5, term=1):
    source = {"_cdc_deleted": deleted, "_cdc_deleted_at": deleted_at}
    return {"_index": "orders", "_id": doc_id, "_seq_no": seq_no, "_primary_term": term, "_source": source}


def test_only_tombstones_older_than_the_retention_are_planned_with_their_sequence_numbers():
    # GIVEN hits at, before and after the cutoff, a live document and a hit without sequence numbers
    due = cutoff(NOW, RETENTION)
    assert due == 1_700_000_000 - RETENTION
    hits = [
        hit("old", due - 1, seq_no=7, term=2),
        hit("edge", due),
        hit("young", due + 1),
        hit("live", due - 10, deleted=False),
        {"_id": "bare", "_source": {"_cdc_deleted": True, "_cdc_deleted_at": due - 1}},
    ]

    # WHEN the reap is planned THEN only the due tombstones are deleted, each conditional on its seq_no
    assert plan_reap(hits, NOW, RETENTION) == [ReapDelete("orders", "old", 7, 2), ReapDelete("orders", "edge", 5, 1)]


def test_the_query_asks_for_due_tombstones_with_sequence_numbers_in_a_bounded_page():
    body = reap_query(NOW, RETENTION, size=1000)
    assert body["size"] == 1000 and body["seq_no_primary_term"] is True
    assert body["query"]["bool"]["filter"] == [
        {"term": {"_cdc_deleted": True}},
        {"range": {"_cdc_deleted_at": {"lte": cutoff(NOW, RETENTION)}}},
    ]


def test_deletes_are_conditional_on_the_searched_sequence_number_not_versioned():
    lines = encode_reap([ReapDelete("orders", "a|1", 7, 2)]).splitlines()
    assert [orjson.loads(line) for line in lines] == [
        {"delete": {"_index": "orders", "_id": "a|1", "if_seq_no": 7, "if_primary_term": 2}}
    ]


def test_a_changed_or_already_reaped_tombstone_is_kept_not_failed():
    items = [
        {"delete": {"status": 200}},
        {"delete": {"status": 409}},  # re-inserted (or rewritten) since the search
        {"delete": {"status": 404}},  # another worker reaped it first
        {"delete": {"status": 503}},
    ]
    assert summarize_reap(items, more=True) == ReapResult(deleted=1, kept=2, failed=1, more=True)
