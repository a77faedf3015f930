"""The local server's Files and Batch APIs, through the official openai client over HTTP."""

import json
import time

import openai
import pytest

from bsky_assets.servers.llm.batches import BatchOptions
from bsky_assets.servers.llm.server import LLMServer, LLMServerOptions

KEY = "local-batch-key-0001"
ENDPOINT = "/v1/chat/completions"


def request_file(tmp_path, lines: int):
    path = tmp_path / "requests.jsonl"
    with path.open("w") as handle:
        for i in range(lines):
            body = {"model": "m", "messages": [{"role": "user", "content": f"post {i}"}]}
            line = {"custom_id": f"c{i}", "method": "POST", "url": ENDPOINT, "body": body}
            handle.write(json.dumps(line) + "\n")
    return path


def serve(**batch_options) -> tuple[LLMServer, openai.OpenAI]:
    server = LLMServer(LLMServerOptions(api_keys=(KEY,), batches=BatchOptions(**batch_options)))
    server.start()
    return server, openai.OpenAI(api_key=KEY, base_url=server.url, max_retries=0)


def finish(client: openai.OpenAI, batch_id: str):
    deadline = time.monotonic() + 30
    while (batch := client.batches.retrieve(batch_id)).status == "in_progress":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return batch


def lines(client: openai.OpenAI, file_id: str) -> list[dict]:
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines()]


def test_a_batch_answers_every_line_and_reports_progress(tmp_path):
    server, client = serve(completion_delay_seconds=0.6)
    with server:
        upload = client.files.create(file=request_file(tmp_path, 12).open("rb"), purpose="batch")
        assert client.files.retrieve(upload.id).bytes == upload.bytes > 0
        batch = client.batches.create(
            input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h",
            metadata={"bsky_request_file": "f1"},
        )  # fmt: skip
        assert batch.status == "in_progress" and batch.request_counts.total == 12
        done = finish(client, batch.id)
        assert done.status == "completed" and done.request_counts.completed == 12
        assert done.metadata == {"bsky_request_file": "f1"} and done.error_file_id is None
        output = lines(client, done.output_file_id)
        assert sorted(line["custom_id"] for line in output) == sorted(f"c{i}" for i in range(12))
        assert all(line["response"]["status_code"] == 200 for line in output)


def test_line_failures_and_expiry_land_in_the_error_file(tmp_path):
    server, client = serve(completion_delay_seconds=0.1, line_failure_share=0.5, expire=True)
    with server:
        upload = client.files.create(file=request_file(tmp_path, 20).open("rb"), purpose="batch")
        batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                      completion_window="24h")  # fmt: skip
        done = finish(client, batch.id)
        assert done.status == "expired"
        errors = lines(client, done.error_file_id)
        expired = [e for e in errors if (e["error"] or {}).get("code") == "batch_expired"]
        failed = [e for e in errors if e["response"] and e["response"]["status_code"] == 500]
        assert len(expired) == 10 and failed
        answered = lines(client, done.output_file_id) if done.output_file_id else []
        assert len(answered) + len(failed) == 10


def test_cancel_list_and_refusals(tmp_path):
    server, client = serve(completion_delay_seconds=60)
    with server:
        upload = client.files.create(file=request_file(tmp_path, 3).open("rb"), purpose="batch")
        ids = [
            client.batches.create(
                input_file_id=upload.id, endpoint=ENDPOINT, completion_window="24h"
            ).id
            for _ in range(3)
        ]
        assert client.batches.cancel(ids[0]).status == "cancelled"
        first = client.batches.list(limit=2)
        assert [b.id for b in first.data] == ids[:0:-1] and first.has_more
        assert [b.id for b in client.batches.list(limit=2, after=ids[1]).data] == [ids[0]]
        with pytest.raises(openai.NotFoundError):
            client.batches.retrieve("batch_missing")
        with pytest.raises(openai.BadRequestError):
            client.batches.create(input_file_id=upload.id, endpoint="/v1/embeddings",
                                  completion_window="24h")  # fmt: skip
        stranger = openai.OpenAI(api_key="wrong", base_url=server.url, max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            stranger.batches.list()
