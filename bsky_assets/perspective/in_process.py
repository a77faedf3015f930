"""The Perspective client interface, and its second implementation: scoring inside the step.

`PerspectiveApi` is what perspective_labels needs from a client (the pattern of dagster's
project_fully_featured: one abstract client, several implementations chosen by a resource).
`PerspectiveClient` (client.py) implements it over HTTP with google-api-python-client, for
Google's API or a compatible server; `InProcessPerspectiveClient` implements it by running the
compatible server's own service, the same validation and the same `Scorer`, in the label step's
process, with no HTTP in between. For a distilled successor at 1,000,000 posts a day that is
the faster transport (no JSON, no multipart batches, no second process), and it is selected by
`BSKY_PERSPECTIVE_TRANSPORT=in-process:<scorer>`.

What the rows say cannot depend on the transport: the labeler and version are the scorer's own
(`bsky-perspective-server/distilled-<model_id> (model)`, version = the model id), exactly what
the server declares in its discovery document, and every request goes through the server's
`PerspectiveService`, so validation errors, dropped attributes and scores are the ones the HTTP
path would store. Switching transport therefore never changes the label set or re-sends a day.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol

from bsky_assets.lib.calls import chunks
from bsky_assets.perspective.attributes import AttributeSet
from bsky_assets.perspective.client import (
    ERROR_TYPE,
    ClientStats,
    Comment,
    CommentResult,
    PerspectiveTuning,
)
from bsky_assets.perspective.service import ApiError, PerspectiveService, Scored, ServerOptions

IN_PROCESS_BATCH = 1_000  # texts per scorer call: rows are per post, so this changes no row


class PerspectiveApi(Protocol):
    """What a labelling step uses of a Perspective client, whatever carries the requests."""

    labeler: str
    labeler_version: str
    attribute_set: AttributeSet
    stats: ClientStats
    settings: PerspectiveTuning

    def analyze(self, comments: Iterable[Comment]) -> Iterator[list[CommentResult]]: ...


class InProcessPerspectiveClient:
    """The Perspective-compatible server's service, called directly (see the module doc)."""

    def __init__(self, tuning: PerspectiveTuning, scorer: str) -> None:
        self.settings = tuning
        self.service = PerspectiveService(ServerOptions(scorer=scorer))
        self.attribute_set = tuning.attribute_set
        self.labeler = self.service.scorer.labeler
        self.labeler_version = self.service.scorer.version
        self.stats = ClientStats()
        self.scorer_spec = scorer
        self._requested = {a: {} for a in self.attribute_set.attributes}

    def _request_body(self, comment: Comment) -> dict[str, Any]:
        """The body PerspectiveClient sends a compatible server (it drops unsupported ones)."""
        body: dict[str, Any] = {
            "comment": {"text": comment.text, "type": "PLAIN_TEXT"},
            "requestedAttributes": self._requested,  # read, never changed, by the service
            "doNotStore": self.settings.do_not_store,
            "dropUnsupportedAttributes": self.settings.drop_unsupported_attributes is not False,
        }
        if self.settings.languages:
            body["languages"] = list(self.settings.languages)
        return body

    def analyze(self, comments: Iterable[Comment]) -> Iterator[list[CommentResult]]:
        for batch in chunks(comments, IN_PROCESS_BATCH):
            outcomes = self.service.score_many([(self._request_body(c), None) for c in batch])
            self.stats.add(parts_sent=len(batch))
            yield [self._result(c.key, o) for c, o in zip(batch, outcomes, strict=True)]

    def _result(self, key: str, outcome: Scored) -> CommentResult:
        """The result the HTTP client would read from the service's response: the scores of
        the attributes the request kept, or the error's type."""
        if not isinstance(outcome, ApiError):
            prepared, values = outcome
            scores = {attribute: float(values[attribute]) for attribute in prepared["attributes"]}
            unscored = tuple(a for a in self.attribute_set.attributes if a not in scores)
            return CommentResult(key, scores=scores, attempts=1, unscored=unscored)
        error = outcome.body
        for detail in error.get("details") or []:
            error_type = detail.get("errorType")
            if isinstance(error_type, str) and ERROR_TYPE.fullmatch(error_type):
                return CommentResult(key, reason=error_type, attempts=1)
        return CommentResult(
            key, reason=f"http_{outcome.code}: {error.get('message', '')}"[:500], attempts=1
        )
