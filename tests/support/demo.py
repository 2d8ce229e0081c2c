"""``make demo``: the service on embedded emulators, with the index visibly converging.

Starts moto server and osmem-server on loopback, creates an ``orders`` table that already holds
orders written before its stream existed (some in a legacy shape: ``items`` as text, ``total`` as
``"unknown"``), then enables a NEW_AND_OLD_IMAGES stream and runs the consumer (``python -m consumer
run``, exactly as users run it) with ``CDC_BACKFILL=on-new-index``: it creates the index, reads the
stream and backfills the existing orders at the same time, while a writer inserts, modifies
(old orders too) and deletes orders. A status line every two seconds shows table items, index
documents, backfill progress, records applied and lag. Ctrl-C (or ``--seconds N``) stops the
writer, the worker (SIGTERM: graceful handoff) and the emulators.
"""

from __future__ import annotations

import argparse
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError
from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError
from osmem_server import OsmemServer, resolve_binary
from prometheus_client.parser import text_string_to_metric_families

from consumer.pipeline.doc_ids import KeyAttribute, KeySchema
from tests.support.emulators import MotoServer, aws_env, emulator_client, free_port
from tests.support.tables import index_documents, table_documents

TABLE = "orders"
KEY_SCHEMA = KeySchema((KeyAttribute("customer", "S"), KeyAttribute("order_id", "N")))
STATUSES = ["placed", "paid", "packed", "shipped", "delivered"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=None, help="stop by itself after this long")
    parser.add_argument("--changes", type=int, default=2000, help="changes the writer makes")
    parser.add_argument("--existing", type=int, default=1000, help="orders in the table before its stream")
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    moto, osmem = MotoServer.start(), _start_osmem_apart(Path(".run"))
    worker: subprocess.Popen | None = None
    try:
        ddb = emulator_client("dynamodb", moto.url)
        _create_orders_table(ddb, args.existing)
        print(
            f"moto server   {moto.url}\nosmem-server  {osmem.url}\n"
            f"table         {TABLE}: {args.existing} orders written before its stream, then stream NEW_AND_OLD_IMAGES"
        )
        metrics_port = free_port()
        log_path = Path(".run") / "demo-worker.log"
        worker = _start_worker(moto.url, osmem.url, metrics_port, log_path)
        print(f"worker        pid {worker.pid}, metrics http://127.0.0.1:{metrics_port}/metrics, logs {log_path}\n")
        writer = threading.Thread(target=_write_orders, args=(ddb, args.changes, args.existing, stop), daemon=True)
        writer.start()
        try:
            _report_until_stopped(ddb, osmem.url, metrics_port, writer, stop, args.seconds)
        except (OSError, BotoCoreError, OpenSearchConnectionError) as exc:
            print(f"an emulator stopped answering, so the demo stops: {exc}", file=sys.stderr)
            return 1
        return 0
    finally:
        stop.set()
        if worker is not None:
            _stop_worker(worker)
        osmem.close()
        moto.stop()
        print("stopped: worker, osmem-server, moto server")


def _start_osmem_apart(workdir: Path) -> OsmemServer:
    """osmem-server in a session of its own, as moto and the worker are: the terminal's Ctrl-C reaches
    the demo alone, which stops the worker before the server it writes to (osmem-server quits on
    SIGINT whatever it inherits, and its launcher has no option for a session)."""
    workdir.mkdir(exist_ok=True)
    launcher = workdir / "osmem-server-apart"
    binary = resolve_binary(None)
    launcher.write_text(
        f"#!{sys.executable}\nimport os, sys\nos.setsid()\nos.execv({binary!r}, [{binary!r}, *sys.argv[1:]])\n"
    )
    launcher.chmod(0o755)
    return OsmemServer.start(japanese=False, binary=str(launcher))


def _create_orders_table(ddb: Any, existing: int) -> None:
    """The table with ``existing`` orders written before its stream was enabled, then the stream."""
    ddb.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "customer", "KeyType": "HASH"}, {"AttributeName": "order_id", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "customer", "AttributeType": "S"},
            {"AttributeName": "order_id", "AttributeType": "N"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    rng = random.Random(3)
    orders = [_order(_legacy_key(n), rng, revision=0, legacy=rng.random() < 0.1) for n in range(existing)]
    for start in range(0, len(orders), 25):
        ddb.batch_write_item(
            RequestItems={TABLE: [{"PutRequest": {"Item": order}} for order in orders[start : start + 25]]}
        )
    ddb.update_table(
        TableName=TABLE, StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    )


def _legacy_key(n: int) -> dict[str, Any]:
    return {"customer": {"S": f"legacy-{n // 10}"}, "order_id": {"N": str(n % 10)}}


def _order(key: dict[str, Any], rng: random.Random, revision: int, legacy: bool = False) -> dict[str, Any]:
    """An order; a legacy one has ``items`` as text and an unknown ``total`` (the mapping copes)."""
    lines = {"L": [{"M": {"sku": {"S": f"sku-{rng.randrange(100)}"}, "qty": {"N": str(rng.randrange(1, 4))}}}]}
    return {
        **key,
        "status": {"S": rng.choice(STATUSES)},
        "total": {"S": "unknown"} if legacy else {"N": f"{rng.randrange(100, 99999) / 100:.2f}"},
        "items": {"S": "see the paper archive"} if legacy else lines,
        "gift": {"BOOL": rng.random() < 0.1},
        "revision": {"N": str(revision)},
    }


def _start_worker(moto_url: str, osmem_url: str, metrics_port: int, log_path: Path) -> subprocess.Popen:
    log_path.parent.mkdir(exist_ok=True)
    env = {
        **aws_env(moto_url),
        "PATH": "",
        "CDC_TABLE_NAME": TABLE,
        "CDC_OPENSEARCH_URL": osmem_url,
        "CDC_METRICS_PORT": str(metrics_port),
        "CDC_METRICS_HOST": "127.0.0.1",
        "CDC_WORKER_ID": "demo-worker",
        "CDC_POLL_INTERVAL_SECONDS": "0.25",
        "CDC_DEAD_LETTER_PATH": str(log_path.parent / "demo-dead-letters.jsonl"),
        "CDC_INITIAL_POSITION": "TRIM_HORIZON",
        "CDC_BACKFILL": "on-new-index",
        "CDC_BACKFILL_SEGMENTS": "4",
    }
    log = open(log_path, "wb")  # noqa: SIM115 (the process owns it until it exits)
    # Own session: a Ctrl-C reaches only the demo, which then stops the worker with one SIGTERM.
    return subprocess.Popen(
        [sys.executable, "-m", "consumer", "run"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def _write_orders(ddb: Any, changes: int, existing: int, stop: threading.Event) -> None:
    """Orders go through their statuses; some are cancelled (deleted) and some placed again; one
    change in five touches an order that existed before the stream."""
    rng = random.Random(7)
    for n in range(changes):
        if stop.is_set():
            return
        if existing and rng.random() < 0.2:
            key = _legacy_key(rng.randrange(existing))
        else:
            key = {"customer": {"S": f"customer-{rng.randrange(40)}"}, "order_id": {"N": str(rng.randrange(5))}}
        if rng.random() < 0.15:
            ddb.delete_item(TableName=TABLE, Key=key)
        else:
            ddb.put_item(TableName=TABLE, Item=_order(key, rng, revision=n + 1))
        stop.wait(0.005)


def _report_until_stopped(
    ddb: Any, osmem_url: str, port: int, writer: threading.Thread, stop: threading.Event, seconds: float | None
) -> None:
    deadline = None if seconds is None else time.monotonic() + seconds
    shown_sample = False
    while not stop.wait(2.0):
        table, index = table_documents(ddb, TABLE, KEY_SCHEMA), index_documents(osmem_url, f"{TABLE}-live")
        samples = _scrape(port)
        applied = sum(v for k, v in samples.items() if k.startswith("cdc_records_processed_total"))
        lag = max((v for k, v in samples.items() if k.startswith("cdc_shard_iterator_age_seconds")), default=0.0)
        backfilled = sum(v for k, v in samples.items() if k.startswith("cdc_backfill_items_total"))
        segments_done = samples.get("cdc_backfill_segments{'state': 'done'}", 0.0)
        segments = sum(v for k, v in samples.items() if k.startswith("cdc_backfill_segments{"))
        state = "CONVERGED: index == table" if table == index else "catching up"
        writing = "writing" if writer.is_alive() else "writer done"
        print(
            f"[{writing:11}] table={len(table):4} index={len(index):4} "
            f"backfill={backfilled:5.0f} items, {segments_done:.0f}/{segments:.0f} segments  "
            f"stream applied={applied:5.0f} iterator_age={lag:4.1f}s  {state}",
            flush=True,
        )
        if table == index and not writer.is_alive() and not shown_sample and index:
            doc_id, document = sorted(index.items())[0]
            print(f"\nsample document _id={doc_id!r}:\n  {document}\n\nCtrl-C to stop.", flush=True)
            shown_sample = True
        if deadline is not None and time.monotonic() > deadline:
            return


def _scrape(port: int) -> dict[str, float]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return {}
    return {f"{s.name}{s.labels}": s.value for f in text_string_to_metric_families(text) for s in f.samples}


def _stop_worker(worker: subprocess.Popen) -> None:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
        try:
            code = worker.wait(timeout=30)
            print(f"worker exited {code} after SIGTERM (leases released)")
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


if __name__ == "__main__":
    sys.exit(main())
