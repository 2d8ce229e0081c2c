"""The naive batched reference consumer of the hot-path benchmark, run as its own process.

What a reasonable person writes in an afternoon: boto3's ``get_records`` (botocore parses the answer),
``TypeDeserializer`` for the image, ``orjson`` for the document, one ``_bulk`` per GetRecords page
(index or delete, no versions), from TRIM_HORIZON on every shard of the stream until ``--records``
records were sent. Prints one JSON line: records and the process's CPU seconds from the first read
to the last bulk (start-up excluded, as for the consumer it is compared with).
"""

from __future__ import annotations

import argparse
import decimal
import sys
import time

import boto3
import orjson
import urllib3
from boto3.dynamodb.types import TypeDeserializer
from botocore.config import Config


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stream-arn", required=True)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--sink", required=True)
    parser.add_argument("--records", type=int, required=True)
    args = parser.parse_args()
    streams = boto3.client(
        "dynamodbstreams",
        endpoint_url=args.endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1}),
    )
    http = urllib3.PoolManager()
    deserialize = TypeDeserializer().deserialize
    shards = [s["ShardId"] for s in streams.describe_stream(StreamArn=args.stream_arn)["StreamDescription"]["Shards"]]
    iterators = {
        shard: streams.get_shard_iterator(StreamArn=args.stream_arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")[
            "ShardIterator"
        ]
        for shard in shards
    }
    sent = 0
    started = time.process_time()
    while sent < args.records:
        for shard, iterator in list(iterators.items()):
            page = streams.get_records(ShardIterator=iterator, Limit=1000)
            iterators[shard] = page["NextShardIterator"]
            lines = []
            for record in page["Records"]:
                body = record["dynamodb"]
                doc_id = "|".join(str(deserialize(value)) for value in body["Keys"].values())
                if record["eventName"] == "REMOVE":
                    lines.append(orjson.dumps({"delete": {"_index": "naive", "_id": doc_id}}))
                else:
                    document = {name: deserialize(value) for name, value in body["NewImage"].items()}
                    lines.append(orjson.dumps({"index": {"_index": "naive", "_id": doc_id}}))
                    lines.append(orjson.dumps(document, default=_plain))
            if lines:
                http.request("POST", f"{args.sink}/_bulk", body=b"\n".join(lines) + b"\n")
                sent += len(page["Records"])
    sys.stdout.write(orjson.dumps({"records": sent, "cpu_seconds": time.process_time() - started}).decode() + "\n")


def _plain(value: object) -> object:
    """Numbers as floats, anything else orjson cannot write (sets, Binary) as its text."""
    if isinstance(value, decimal.Decimal):
        return float(value)
    return repr(value)


if __name__ == "__main__":
    main()
