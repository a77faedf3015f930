"""The Perspective-compatible server's wire protocol, spoken to over raw HTTP."""

import json
import urllib.error
import urllib.request

import pytest

from bsky_assets.perspective.discovery import bundled_discovery_document


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def post(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, bytes, str]:
    request = urllib.request.Request(url, body, {"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), response.headers["Content-Type"]
    except urllib.error.HTTPError as error:
        return error.code, error.read(), error.headers["Content-Type"]


def analyze(text: str, *attributes: str, **extra) -> bytes:
    body = {"comment": {"text": text}, "requestedAttributes": {a: {} for a in attributes}}
    return json.dumps(body | extra).encode()


def test_discovery_document_points_at_this_server(serve) -> None:
    server = serve.perspective()
    document = get(server.url + "/$discovery/rest?version=v1alpha1")
    assert document["rootUrl"] == document["baseUrl"] == server.url + "/"
    assert document["batchPath"] == "batch"
    assert "googleapis.com" not in json.dumps({k: document[k] for k in ("rootUrl", "baseUrl")})
    assert document["x-bskyLabeler"]["synthetic"] is True
    assert document["revision"] == "synthetic-hash-1"
    bundled = bundled_discovery_document()
    assert document["schemas"] == bundled["schemas"]
    assert document["resources"] == bundled["resources"]


def test_single_analyze_has_googles_response_shape(serve) -> None:
    server = serve.perspective()
    status, body, _ = post(
        server.url + "/v1alpha1/comments:analyze?key=k",
        analyze("hello there 👋", "TOXICITY", "SPAM", clientToken="t-1", languages=["en"]),
    )
    payload = json.loads(body)
    assert status == 200
    assert set(payload["attributeScores"]) == {"TOXICITY", "SPAM"}
    toxicity = payload["attributeScores"]["TOXICITY"]
    assert 0 <= toxicity["summaryScore"]["value"] <= 1
    assert toxicity["summaryScore"]["type"] == "PROBABILITY"
    assert toxicity["spanScores"][0]["end"] == 14  # UTF-16 code units: the emoji counts 2
    assert payload["languages"] == payload["detectedLanguages"] == ["en"]
    assert payload["clientToken"] == "t-1"


@pytest.mark.parametrize(
    ("body", "code", "error_type"),
    [
        (analyze("", "TOXICITY"), 400, "COMMENT_EMPTY"),
        (analyze("x" * 20_481, "TOXICITY"), 400, "COMMENT_TOO_LONG"),
        (
            analyze("bonjour à tous", "NUANCE_EXPERIMENTAL", languages=["fr"]),
            400,
            "LANGUAGE_NOT_SUPPORTED_BY_ATTRIBUTE",
        ),
        (analyze("hello friends", "NOT_AN_ATTRIBUTE"), 400, "UNKNOWN_ATTRIBUTE"),
        (b"{not json", 400, None),
    ],
)
def test_errors_have_googles_shape(serve, body, code, error_type) -> None:
    server = serve.perspective()
    status, raw, _ = post(server.url + "/v1alpha1/comments:analyze?key=k", body)
    error = json.loads(raw)["error"]
    assert status == error["code"] == code
    assert error["status"] == "INVALID_ARGUMENT"
    found = [d.get("errorType") for d in error.get("details", [])]
    assert found == ([error_type] if error_type else [])


def test_missing_key_and_invalid_key(serve) -> None:
    server = serve.perspective(require_key=True, api_keys=("good",))
    status, raw, _ = post(server.url + "/v1alpha1/comments:analyze", analyze("hi there", "SPAM"))
    assert status == 403 and json.loads(raw)["error"]["status"] == "PERMISSION_DENIED"
    status, raw, _ = post(
        server.url + "/v1alpha1/comments:analyze?key=bad", analyze("hi there", "SPAM")
    )
    assert status == 400
    assert json.loads(raw)["error"]["details"][0]["reason"] == "API_KEY_INVALID"


def test_unsupported_attributes_are_errors_or_dropped_never_invented(serve) -> None:
    server = serve.perspective(scorer="profanity-check")
    url = server.url + "/v1alpha1/comments:analyze"
    status, raw, _ = post(url, analyze("what a lovely day", "TOXICITY", "NUANCE_EXPERIMENTAL"))
    assert status == 400
    assert json.loads(raw)["error"]["details"][0]["errorType"] == (
        "ATTRIBUTE_NOT_SUPPORTED_BY_SCORER"
    )
    status, raw, _ = post(
        url,
        analyze(
            "what a lovely day",
            "TOXICITY",
            "PROFANITY",
            "NUANCE_EXPERIMENTAL",
            dropUnsupportedAttributes=True,
        ),
    )
    assert status == 200
    assert set(json.loads(raw)["attributeScores"]) == {"PROFANITY"}


def test_batch_with_folded_content_ids(serve) -> None:
    """Content-IDs folded across lines, LF or CRLF inside; answers use CRLF and reason phrases."""
    server = serve.perspective()
    boundary = "===============7330845974216740156=="
    parts = []
    for n, text in enumerate(["a friendly comment", ""]):
        body = analyze(text, "TOXICITY").decode()
        parts.append(
            f"--{boundary}\r\n"
            "Content-Type: application/http\r\n"
            "Content-Transfer-Encoding: binary\r\n"
            "MIME-Version: 1.0\r\n"
            # googleapiclient writes "<base + n>"; email folding breaks it at the spaces
            f"Content-ID:\r\n <e3bd4bd1-2e70-4dbf-a1a8-4b7b3f3e5a10\r\n + {n}>\r\n\r\n"
            "POST /v1alpha1/comments:analyze?key=k&alt=json HTTP/1.1\n"
            "Content-Type: application/json\n"
            f"content-length: {len(body)}\n\n"
            f"{body}\r\n"
        )
    payload = ("".join(parts) + f"--{boundary}--\r\n").encode()
    status, raw, content_type = post(
        server.url + "/batch", payload, f'multipart/mixed; boundary="{boundary}"'
    )
    assert status == 200 and content_type.startswith("multipart/mixed; boundary=")
    text = raw.decode()
    assert "Content-ID: <response-e3bd4bd1-2e70-4dbf-a1a8-4b7b3f3e5a10 + 0>\r\n" in text
    assert "Content-ID: <response-e3bd4bd1-2e70-4dbf-a1a8-4b7b3f3e5a10 + 1>\r\n" in text
    assert "HTTP/1.1 200 OK\r\n" in text and "HTTP/1.1 400 Bad Request\r\n" in text
    assert server.stats["batch_requests"] == 1 and server.stats["parts"] == 2


def test_per_minute_quota_answers_429_per_part(serve) -> None:
    server = serve.perspective(quota_per_minute=120)  # 2 per second, burst of 2
    codes = [
        post(server.url + "/v1alpha1/comments:analyze", analyze("a kind word", "SPAM"))[0]
        for _ in range(6)
    ]
    assert codes[:2] == [200, 200] and codes.count(429) >= 3
    _, raw, _ = post(server.url + "/v1alpha1/comments:analyze", analyze("again, kindly", "SPAM"))
    error = json.loads(raw)["error"]
    assert error["status"] == "RESOURCE_EXHAUSTED" and "per minute" in error["message"]
    stats = get(server.url + "/stats")  # counters readable over HTTP
    assert stats["quota_429"] >= 4 and stats["status_429"] == stats["quota_429"]
    post(server.url + "/stats/reset", b"")
    assert "quota_429" not in get(server.url + "/stats")
