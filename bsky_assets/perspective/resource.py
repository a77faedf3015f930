"""The Perspective resource: Google's API until its shutdown, any compatible server after."""

from __future__ import annotations

from urllib.parse import urlsplit

import dagster as dg
from pydantic import Field

from bsky_assets import settings
from bsky_assets.perspective.client import PerspectiveClient, PerspectiveSettings, PerspectiveTuning
from bsky_assets.perspective.discovery import is_google
from bsky_assets.perspective.in_process import InProcessPerspectiveClient, PerspectiveApi


def perspective_target() -> dict[str, str | None]:
    """Where Perspective requests go and with which key: the environment only, never run config.

    Google's key goes to Google's host alone, over HTTPS; a self-hosted server gets its own
    optional key (PERSPECTIVE_SERVER_API_KEY), so no configuration can send Google's key to it.
    """
    url = settings.perspective_url()
    if is_google(url):
        if urlsplit(url).scheme != "https":
            raise settings.ConfigurationError(
                "PERSPECTIVE_URL: Google's API is reached over https only"
            )
        return {"base_url": url, "api_key": settings.perspective_api_key()}
    return {"base_url": url, "api_key": settings.perspective_server_api_key()}


class PerspectiveResource(dg.ConfigurableResource, PerspectiveTuning):
    """Batched AnalyzeComment calls via google-api-python-client (see perspective/client.py).

    Run config tunes pacing, batching and the attribute set. Where the requests go and the key
    are read from the environment when the run builds its client (PERSPECTIVE_URL,
    PERSPECTIVE_API_KEY for Google, PERSPECTIVE_SERVER_API_KEY for a self-hosted server), never
    from config: a run cannot redirect a key, and partial run config cannot drop one.
    """

    requests_per_second: float | None = Field(  # type: ignore[assignment]
        default=None,
        gt=0,
        description="Comments per second across all threads (each batch part counts); unset: "
        "PERSPECTIVE_REQUESTS_PER_SECOND, else 1 (Google's default quota).",
    )

    def client_settings(self) -> PerspectiveSettings:
        values = {name: getattr(self, name) for name in PerspectiveTuning.model_fields}
        values["requests_per_second"] = (
            self.requests_per_second or settings.perspective_requests_per_second()
        )
        return PerspectiveSettings(**values, **perspective_target())

    def check_ready(self) -> None:
        """Fail at once, never silently fall back, when Google's API is selected without a key."""
        if settings.perspective_transport() != "http":
            return  # scored in the step: no destination, no key
        try:
            client_settings = self.client_settings()
        except settings.ConfigurationError as error:
            raise dg.Failure(description=str(error)) from None
        if client_settings.uses_google and not client_settings.api_key:
            raise dg.Failure(
                description=(
                    "No Perspective API key. Either set PERSPECTIVE_API_KEY to use Google's "
                    "Perspective API (available until 2026-12-31), or point PERSPECTIVE_URL at "
                    "a Perspective-compatible server, e.g. `bsky-assets serve perspective` "
                    "(PERSPECTIVE_URL=http://127.0.0.1:8081)."
                )
            )

    def get_client(self) -> PerspectiveApi:
        """Over HTTP (Google's API or a compatible server), or in-process when
        BSKY_PERSPECTIVE_TRANSPORT=in-process:<scorer> (same rows, same provenance)."""
        transport = settings.perspective_transport()
        if transport != "http":
            tuning = PerspectiveTuning(
                **{name: getattr(self, name) for name in PerspectiveTuning.model_fields}
                | {"requests_per_second": self.requests_per_second or 1.0}
            )
            return InProcessPerspectiveClient(tuning, transport.removeprefix("in-process:"))
        self.check_ready()
        return PerspectiveClient(self.client_settings())
