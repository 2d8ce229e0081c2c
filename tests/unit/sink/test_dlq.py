"""Dead-letter destinations against fake clients: one serialisation, SQS batching and limits,
failed entries resent, S3 keys that make a retried batch overwrite its own object."""

from __future__ import annotations

import orjson
import pytest
from structlog.testing import capture_logs

from consumer.errors import DeadLetterError, SinkError
from consumer.pipeline.letters import DeadLetter, letter_for, to_json
from consumer.pipeline.projection_rules import ProjectionRules
from consumer.pipeline.shaping import FieldPath
from consumer.sink.dlq import SQS_MAX_MESSAGE_BYTES, DeadLetterFile, DeadLetterObjects, DeadLetterQueue
from tests.support.factories import stream_record


class FakeSqs:
    """Records SendMessageBatch calls; ``fail`` maps an entry id to how many times it is refused."""

    def __init__(self, fail: dict[str, int] | None = None) -> None:
        self.calls: list[list[dict]] = []
        self.fail = dict(fail or {})

    def send_message_batch(self, QueueUrl, Entries):  # noqa: N803 (boto3's spelling)
        self.calls.append(Entries)
        failed = []
        for entry in Entries:
            if self.fail.get(entry["Id"], 0) > 0:
                self.fail[entry["Id"]] -= 1
                failed.append({"Id": entry["Id"], "SenderFault": False, "Code": "InternalError"})
        ok = [{"Id": e["Id"]} for e in Entries if e["Id"] not in {f["Id"] for f in failed}]
        return {"Successful": ok, "Failed": failed}


class FakeS3:
    def __init__(self) -> None:
        self.objects: dict[str, dict] = {}

    def put_object(self, **kwargs):
        self.objects[kwargs["Key"]] = kwargs
        return {}


def letter(seq: str | None = "100", shard: str = "shard-1", keep_raw: bool = False, **record_fields) -> DeadLetter:
    record = stream_record("INSERT", keys={"pk": {"S": f"k{seq}"}}, seq=seq, **record_fields)
    if seq is None:
        del record["dynamodb"]["SequenceNumber"]
    return letter_for(shard, record, "400 mapper_parsing_exception", keep_raw=keep_raw, attempts=2)


def test_a_letter_holds_the_changes_identity_and_its_image_as_it_would_be_indexed():
    # GIVEN a record with binary values and a datetime WHEN its letter is serialised
    data = orjson.loads(
        to_json(letter(new_image={"pk": {"S": "k100"}, "b": {"B": b"\x00\xff"}}), "2024-01-01T00:00:00+00:00")
    )
    # THEN it names the shard, position, error and attempts, keeps the keys as the stream gave them
    # (redrive reads the item by them) and the image as a document, losslessly
    assert data["shard_id"] == "shard-1" and data["sequence_number"] == "100" and data["attempts"] == 2
    assert data["error"] == "400 mapper_parsing_exception"
    assert data["record"]["eventName"] == "INSERT" and data["record"]["dynamodb"]["Keys"] == {"pk": {"S": "k100"}}
    assert data["document"] == {"pk": "k100", "b": "AP8="}
    assert data["dead_lettered_at"] == "2024-01-01T00:00:00+00:00"
    assert "raw_record" not in data


def test_a_letter_never_holds_what_the_index_would_not_hold_unless_raw_records_are_asked_for():
    # GIVEN rules that mask the email and drop the card WHEN a record is dead-lettered
    rules = ProjectionRules(
        mask_fields=(FieldPath.parse("email"),), drop_fields=(FieldPath.parse("card"),), mask_key=b"k" * 16
    )
    image = {"pk": {"S": "a"}, "email": {"S": "a@example.com"}, "card": {"S": "4111"}}
    record = stream_record("INSERT", keys={"pk": {"S": "a"}}, new_image=image)
    data = orjson.loads(to_json(letter_for("s", record, "boom", rules), "now"))
    # THEN the letter's image is masked and dropped as the document would be, and no raw record is kept
    assert data["document"]["email"].startswith("hmac-sha256:") and "card" not in data["document"]
    assert "a@example.com" not in to_json(letter_for("s", record, "boom", rules), "now").decode()
    # AND only an explicit setting keeps the raw record
    raw = orjson.loads(to_json(letter_for("s", record, "boom", rules, keep_raw=True), "now"))
    assert raw["raw_record"]["dynamodb"]["NewImage"]["email"] == {"S": "a@example.com"}


def test_sqs_sends_at_most_ten_messages_per_call_one_letter_each():
    # GIVEN 23 letters WHEN written THEN three calls of 10, 10 and 3 carry one letter per message
    sqs = FakeSqs()
    DeadLetterQueue(sqs, "https://q").write([letter(str(100 + i)) for i in range(23)])
    assert [len(call) for call in sqs.calls] == [10, 10, 3]
    sent = [orjson.loads(entry["MessageBody"])["sequence_number"] for call in sqs.calls for entry in call]
    assert sent == [str(100 + i) for i in range(23)]


def test_sqs_batches_stay_under_the_total_payload_limit():
    # GIVEN letters of ~100 KiB each WHEN written THEN no call carries more than 256 KiB of bodies
    sqs = FakeSqs()
    big = {"blob": {"S": "x" * 100_000}}
    DeadLetterQueue(sqs, "https://q").write([letter(str(i), new_image=big) for i in range(5)])
    assert all(sum(len(e["MessageBody"].encode()) for e in call) <= SQS_MAX_MESSAGE_BYTES for call in sqs.calls)
    assert sum(len(call) for call in sqs.calls) == 5


def test_an_oversize_letter_is_sent_cut_down_to_its_keys_and_logged():
    # GIVEN a letter whose JSON is over 256 KiB WHEN written THEN its record keeps only identity and a note
    sqs = FakeSqs()
    huge = letter("7", keep_raw=True, new_image={"blob": {"S": "x" * 300_000}})
    with capture_logs() as logs:
        DeadLetterQueue(sqs, "https://q").write([huge])
    (entry,) = sqs.calls[0]
    assert len(entry["MessageBody"].encode()) <= SQS_MAX_MESSAGE_BYTES
    sent = orjson.loads(entry["MessageBody"])
    assert sent["sequence_number"] == "7" and sent["error"] == huge.error
    assert sent["record"]["dynamodb"]["Keys"] == {"pk": {"S": "k7"}} and sent["document"] is None
    assert "left out" in sent["record"]["note"]
    assert [event["event"] for event in logs] == ["dead_letter_truncated"]


def test_failed_entries_are_resent_until_accepted():
    # GIVEN SQS refusing entry 1 twice WHEN written THEN only that entry is sent again, until accepted
    sqs = FakeSqs(fail={"1": 2})
    DeadLetterQueue(sqs, "https://q").write([letter("1"), letter("2"), letter("3")])
    assert [[e["Id"] for e in call] for call in sqs.calls] == [["0", "1", "2"], ["1"], ["1"]]


def test_persistently_failed_entries_raise_a_retriable_sink_error():
    # GIVEN SQS refusing an entry every time WHEN written THEN DeadLetterError (a SinkError: the batch is retried)
    sqs = FakeSqs(fail={"0": 99})
    with pytest.raises(DeadLetterError) as caught:
        DeadLetterQueue(sqs, "https://q", attempts=3).write([letter("1")])
    assert isinstance(caught.value, SinkError) and caught.value.retriable
    assert len(sqs.calls) == 3


def test_s3_key_is_the_shards_sequence_range_so_a_retry_overwrites():
    # GIVEN letters out of sequence order WHEN written twice THEN one object named by the range, as JSON lines
    s3 = FakeS3()
    objects = DeadLetterObjects(s3, "bucket", "orders/dlq/")
    batch = [letter("300"), letter("20"), letter(None)]
    objects.write(batch)
    objects.write(batch)
    (key,) = s3.objects
    assert key == "orders/dlq/shard-1/20-300.jsonl"
    put = s3.objects[key]
    assert put["ContentType"] == "application/x-ndjson" and put["Bucket"] == "bucket"
    assert [orjson.loads(line)["sequence_number"] for line in put["Body"].splitlines()] == ["300", "20", None]


def test_s3_letters_without_sequence_numbers_get_a_stable_digest_key():
    objects = DeadLetterObjects(FakeS3(), "bucket")
    batch = [letter(None), letter(None, shard="shard-1")]
    assert objects.key("shard-1", batch) == objects.key("shard-1", batch)
    assert objects.key("shard-1", batch).startswith("shard-1/unsequenced-")


# --- the file destination: a write cut short by a full disk ----------------------------------

_FULL_DISK_SCRIPT = """
import resource, sys
from pathlib import Path
from consumer.sink.dlq import DeadLetterFile
from consumer.pipeline.letters import DeadLetter

path, limit = Path(sys.argv[1]), int(sys.argv[2])
big = DeadLetter("shard-1", "200", "400 mapper_parsing_exception", {"eventName": "INSERT"}, document={"x": "y" * 4000})
small = DeadLetter("shard-1", "100", "400 mapper_parsing_exception", {"eventName": "INSERT"})
DeadLetterFile(path).write([small])
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))  # the disk is full past `limit` bytes
try:
    DeadLetterFile(path).write([big])
    print("written")
except OSError as exc:
    print("refused", exc.errno)
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # space is freed
DeadLetterFile(path).write([big])  # the retry of the same batch
"""


def test_a_letter_cut_short_by_a_full_disk_leaves_no_fragment(tmp_path):
    # GIVEN a dead-letter file holding one letter, on a disk that fills up in the middle of the next
    # letter (a real short write: the kernel writes what fits, then refuses the rest)
    import subprocess
    import sys

    path = tmp_path / "dlq.jsonl"
    result = subprocess.run(
        [sys.executable, "-c", _FULL_DISK_SCRIPT, str(path), "1000"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr

    # WHEN the write fails and is retried once space is freed
    assert result.stdout.split() == ["refused", "27"]  # EFBIG: past the file size limit

    # THEN every line of the file is one whole letter: the first, and the retried one once
    letters = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert [letter["sequence_number"] for letter in letters] == ["100", "200"]
    assert path.read_bytes().endswith(b"\n")


def test_a_torn_tail_left_by_a_crash_is_cut_before_the_next_letter(tmp_path):
    # GIVEN a file whose last line was cut short (a process killed in the middle of a write)
    path = tmp_path / "dlq.jsonl"
    whole = to_json(letter("100"), "2024-01-01T00:00:00+00:00") + b"\n"
    path.write_bytes(whole + whole[:37])

    # WHEN the next letters are written
    with capture_logs() as logs:
        DeadLetterFile(path).write([letter("200")])

    # THEN the fragment is gone, said so, and every line parses
    assert [orjson.loads(line)["sequence_number"] for line in path.read_bytes().splitlines()] == ["100", "200"]
    assert [entry["removed_bytes"] for entry in logs if entry["event"] == "dead_letter_file_repaired"] == [37]
