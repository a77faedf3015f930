"""The Perspective resource: Google's API until its shutdown, any compatible server after."""

import os

import dagster as dg
from pydantic import Field

from bsky_assets.perspective.attributes import DEFAULT_ATTRIBUTES, AttributeSet
from bsky_assets.perspective.client import (
    GOOGLE_URL,
    PerspectiveClient,
    PerspectiveSettings,
    is_google,
)


class PerspectiveResource(dg.ConfigurableResource):
    """Batched AnalyzeComment calls via google-api-python-client (see perspective/client.py)."""

    api_key: str | None = Field(
        default=None, description="API key; set it with EnvVar('PERSPECTIVE_API_KEY')."
    )
    base_url: str = Field(
        default_factory=lambda: os.environ.get("PERSPECTIVE_URL") or GOOGLE_URL,
        description="Google's API or a Perspective-compatible server (PERSPECTIVE_URL).",
    )
    attributes: list[str] = Field(default_factory=lambda: list(DEFAULT_ATTRIBUTES))
    languages: list[str] = Field(default_factory=lambda: ["en"])
    do_not_store: bool = Field(default=True, description="These are other people's posts.")
    drop_unsupported_attributes: bool | None = Field(
        default=None,
        description="Ask the server to drop attributes it cannot score instead of failing the "
        "post; dropped attributes are recorded per row in unscored_attributes. Default: on for "
        "compatible servers (their scorers may model only some attributes), off for Google.",
    )
    batch_size: int = Field(default=50, ge=1, le=100)
    requests_per_second: float = Field(
        default_factory=lambda: float(os.environ.get("PERSPECTIVE_REQUESTS_PER_SECOND", "1")),
        gt=0,
        description="Comments per second across all threads (each batch part counts). "
        "Google's default quota is 1/s; PERSPECTIVE_REQUESTS_PER_SECOND.",
    )
    concurrency: int = Field(default=4, ge=1, description="Batch requests in flight.")
    max_retries: int = Field(default=6, ge=0)
    initial_backoff_seconds: float = Field(default=1.0, gt=0)
    max_backoff_seconds: float = Field(default=60.0, gt=0)
    timeout_seconds: float = Field(default=60.0, gt=0)

    @property
    def uses_google(self) -> bool:
        return is_google(self.base_url)

    def check_ready(self) -> None:
        """Fail at once, never silently fall back, when Google's API is selected without a key."""
        if self.uses_google and not self.api_key:
            raise dg.Failure(
                description=(
                    "No Perspective API key. Either set PERSPECTIVE_API_KEY to use Google's "
                    "Perspective API (available until 2026-12-31), or point PERSPECTIVE_URL at "
                    "a Perspective-compatible server, e.g. `bsky-assets serve perspective` "
                    "(PERSPECTIVE_URL=http://127.0.0.1:8081)."
                )
            )

    def get_client(self) -> PerspectiveClient:
        self.check_ready()
        return PerspectiveClient(
            PerspectiveSettings(
                base_url=self.base_url,
                api_key=self.api_key,
                attribute_set=AttributeSet(tuple(self.attributes)),
                languages=tuple(self.languages),
                do_not_store=self.do_not_store,
                drop_unsupported_attributes=(
                    not self.uses_google
                    if self.drop_unsupported_attributes is None
                    else self.drop_unsupported_attributes
                ),
                batch_size=self.batch_size,
                requests_per_second=self.requests_per_second,
                concurrency=self.concurrency,
                max_retries=self.max_retries,
                initial_backoff_seconds=self.initial_backoff_seconds,
                max_backoff_seconds=self.max_backoff_seconds,
                timeout_seconds=self.timeout_seconds,
            )
        )
