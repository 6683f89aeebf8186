"""The SQS batch protocol shared by the worker and the dead-letter handler."""

import json

from chalicelib import batch


def _record(message_id, body, receives=1):
    return {"messageId": message_id, "body": body, "attributes": {"ApproximateReceiveCount": str(receives)}}


def test_job_records_keep_the_job_messages_in_order_and_drop_the_rest(log_output):
    records = [
        _record("m1", json.dumps({"jobId": "A", "lease": "t"}), receives=3),
        _record("m2", "not json"),
        _record("m3", json.dumps({"id": "B"})),
        _record("m4", json.dumps({"jobId": "C"})),
    ]

    found = batch.job_records(records, source="message")

    assert [(r.message_id, r.message.job_id, r.message.lease, r.receive_count) for r in found] == [
        ("m1", "A", "t", 3),
        ("m4", "C", None, 1),
    ]
    dropped = [json.loads(line)["message"] for line in log_output.getvalue().splitlines() if line.startswith("{")]
    assert dropped == ["message m2 is not a job message: dropped", "message m3 is not a job message: dropped"]


def test_the_response_names_only_the_failed_records():
    found = batch.job_records(
        [_record("m1", json.dumps({"jobId": "A"})), _record("m2", json.dumps({"jobId": "B"}))], source="message"
    )

    assert batch.response(found[1:]) == {"batchItemFailures": [{"itemIdentifier": "m2"}]}
    assert batch.response([]) == {"batchItemFailures": []}
