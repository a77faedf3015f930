"""The Perspective resource: Google's API until its shutdown, any compatible server after."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from bsky_assets import settings
from bsky_assets.perspective.client import PerspectiveClient, PerspectiveSettings


class PerspectiveResource(dg.ConfigurableResource, PerspectiveSettings):
    """Batched AnalyzeComment calls via google-api-python-client (see perspective/client.py).

    Its fields are `PerspectiveSettings`'; the two that default to the environment are read when
    the client is built, in the run (see settings.py).
    """

    base_url: str | None = Field(  # type: ignore[assignment]
        default=None,
        description="Google's API or a Perspective-compatible server; unset: PERSPECTIVE_URL, "
        "else Google's.",
    )
    requests_per_second: float | None = Field(  # type: ignore[assignment]
        default=None,
        gt=0,
        description="Comments per second across all threads (each batch part counts); unset: "
        "PERSPECTIVE_REQUESTS_PER_SECOND, else 1 (Google's default quota).",
    )

    def client_settings(self) -> PerspectiveSettings:
        values = {name: getattr(self, name) for name in PerspectiveSettings.model_fields}
        values["base_url"] = self.base_url or settings.perspective_url()
        values["requests_per_second"] = (
            self.requests_per_second or settings.perspective_requests_per_second()
        )
        return PerspectiveSettings(**values)

    def check_ready(self) -> None:
        """Fail at once, never silently fall back, when Google's API is selected without a key."""
        if self.client_settings().uses_google and not self.api_key:
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
        return PerspectiveClient(self.client_settings())
