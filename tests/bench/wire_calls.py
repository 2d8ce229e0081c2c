"""Does the hand-written wire client still pay for itself? Client CPU per GetRecords call, ours
(``consumer.shards.raw_records``: SigV4 by ``consumer.aws.sigv4``, one keep-alive socket, orjson)
against boto3's ``get_records`` (botocore's signer, urllib3, its shape parser), in the same run, on
the same moto stream: a full page (1000 records) and an empty page (an idle shard, the commonest call
at a thousand shards). Rounds alternate between the two clients so that the machine's noise falls on
both; CPU is this thread's (``time.thread_time``), so moto's own work is not counted.

    python -m tests.bench.wire_calls [--records 1000] [--calls 30]

Prints figures and ratios; asserts nothing about speed (the README records them). ``--smoke`` runs a
tiny input (make test).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import boto3

from consumer.leases.model import LATEST, TRIM_HORIZON
from consumer.shards.raw_records import RawGetRecords
from tests.support.emulators import MotoServer
from tests.support.tables import create_table

ROUNDS = 5


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1000, help="records on the full page (≤ 1000)")
    parser.add_argument("--calls", type=int, default=30, help="full-page calls per client and round (5x empty ones)")
    parser.add_argument("--smoke", action="store_true", help="a tiny input (make test)")
    args = parser.parse_args(argv)
    records, calls = (20, 5) if args.smoke else (args.records, args.calls)
    # the wire client signs with the default chain's credentials, as the service's clients are built
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    moto = MotoServer.start()
    try:
        run(moto.url, records, calls)
    finally:
        moto.stop()


def run(url: str, records: int, calls: int) -> None:
    options = {"endpoint_url": url, "region_name": "us-east-1"}
    options.update(aws_access_key_id="testing", aws_secret_access_key="testing")
    ddb, streams = boto3.client("dynamodb", **options), boto3.client("dynamodbstreams", **options)
    create_table(ddb, "wire")
    for i in range(records):
        item = {"pk": {"S": f"k{i}"}, "sk": {"N": "1"}, "name": {"S": "x" * 200}, "n": {"N": str(i)}}
        ddb.put_item(TableName="wire", Item=item)
    arn = ddb.describe_table(TableName="wire")["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    ours = RawGetRecords(streams)

    def iterator(kind: str) -> str:
        return streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType=kind)["ShardIterator"]

    def wire(position: str) -> Callable[[], int]:
        at = iterator(position)
        return lambda: len(ours.get_records(at, 1000)[0])

    def botocore(position: str) -> Callable[[], int]:
        at = iterator(position)
        return lambda: len(streams.get_records(ShardIterator=at, Limit=1000)["Records"])

    for page, position, count in (("full page", TRIM_HORIZON, calls), ("empty page", LATEST, 5 * calls)):
        times: dict[str, list[float]] = {"wire": [], "boto3": []}
        counts = {}
        for _ in range(ROUNDS):
            for name, make in (("wire", wire), ("boto3", botocore)):
                call = make(position)
                counts[name] = call()  # warm: the connection made, the page cached by moto
                started = time.thread_time()
                for _ in range(count):
                    call()
                times[name].append((time.thread_time() - started) / count * 1e6)
        assert counts["wire"] == counts["boto3"] == (records if position == TRIM_HORIZON else 0), counts
        wire_us, boto_us = statistics.median(times["wire"]), statistics.median(times["boto3"])
        print(
            f"{page} ({counts['wire']} records): client CPU per GetRecords, median of {ROUNDS} rounds of "
            f"{count}: wire {wire_us:.0f} us, boto3 {boto_us:.0f} us; wire_vs_boto3={wire_us / boto_us:.3f}"
        )


if __name__ == "__main__":
    main()
