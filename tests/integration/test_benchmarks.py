"""Every benchmark runs once on a tiny input, so none can rot unnoticed: each must complete and pass
its own correctness check. Nothing here asserts a speed (``make bench`` / ``make bench-scale`` measure)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.long]


def bench(module: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, "--smoke"], capture_output=True, text=True, timeout=600, check=False
    )


def test_the_bulk_path_benchmark_runs_and_verifies_what_it_indexed():
    result = bench("tests.bench.bulk_path")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "sampled docs identical in _source and _version: OK" in result.stdout
    assert "engine=osmem ratio_vs_ceiling=" in result.stdout and "pipelined_ratio_vs_ceiling=" in result.stdout
    assert "cpu_with_parse_ratio_vs_server=" in result.stdout and "read_vs_whole_parse_cpu=" in result.stdout


def test_the_scale_benchmark_runs_every_section():
    result = bench("tests.bench.scale")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    for line in ("hot_path_ratio=", "catch_up_ratio=", "visibility (change written", "idle cost:", "pool: 2 workers"):
        assert line in result.stdout, line


def test_the_route_cost_benchmark_runs_and_verifies_both_paths_indexed_the_same():
    result = bench("tests.bench.route_cost")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "the same in the plain index and across the routes' indices: OK" in result.stdout
    assert "routing_cpu_ratio=" in result.stdout and "routes_only_cpu_ratio=" in result.stdout


def test_the_backfill_benchmark_runs_and_verifies_what_it_indexed():
    result = bench("tests.bench.backfill")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "verified: 1500 live documents in each index, a sampled document identical: OK" in result.stdout
    assert "engine=osmem backfill_ratio_vs_ceiling=" in result.stdout
    assert result.stdout.count("consumer audit peak RSS") == 2


def test_the_wire_calls_benchmark_compares_both_clients_on_both_pages():
    result = bench("tests.bench.wire_calls")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "full page (20 records)" in result.stdout and "empty page (0 records)" in result.stdout
    assert result.stdout.count("wire_vs_boto3=") == 2


def test_the_reindex_benchmark_rebuilds_the_table_and_counts_the_stream_reads_of_both_generations():
    result = bench("tests.bench.reindex")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "reindex-osmem-live serves generation 2, 1500 live documents, none with the dropped field: OK" in (
        result.stdout
    )
    assert "engine=osmem reindex_vs_backfill_time_ratio=" in result.stdout
    assert "engine=osmem two_generations_reads_ratio" in result.stdout


def test_the_lease_units_benchmark_bills_both_modes_in_both_windows_and_verifies_both_indices():
    result = bench("tests.bench.lease_units")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "verified: both indices hold the last state of all" in result.stdout
    for window in ("busy", "idle"):
        (line,) = [line for line in result.stdout.splitlines() if line.startswith(window)]
        assert "native:" in line and "KCL:" in line and "native_vs_kcl=" in line


def test_the_modes_benchmark_drains_the_backlog_and_reads_the_process_tree():
    result = bench("tests.bench.modes")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (line,) = [line for line in result.stdout.splitlines() if line.strip().startswith("native worker")]
    assert "records/s" in line and "us CPU/record" in line and "processes, RSS" in line
