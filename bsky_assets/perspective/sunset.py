"""Google's Perspective API ends after 2026-12-31: what the UI says about it and about the
labeler this code location sends posts to.

Read when the code location loads (the descriptions are static): every row still records the
labeler that actually scored it, which is what to trust.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from bsky_assets import settings

PERSPECTIVE_SUNSET = date(2026, 12, 31)


def sunset_notice(today: date | None = None) -> str:
    today = today or datetime.now(UTC).date()
    days = (PERSPECTIVE_SUNSET - today).days
    if days >= 0:
        when = f"shuts down after {PERSPECTIVE_SUNSET} ({days} days from {today})"
    else:
        when = f"shut down after {PERSPECTIVE_SUNSET}"
    return (
        f"Google's Perspective API {when} and issues no new keys. After it, label with the "
        "project's Perspective-compatible server and a successor distilled from your own "
        "Google-scored history (README: After Perspective)."
    )


def active_labeler() -> str:
    """Who scores Perspective attributes for runs of this code location, as far as the
    environment says (the local services name their scorer in BSKY_PERSPECTIVE_LABELER)."""
    from bsky_assets.perspective.discovery import is_google

    described = settings.perspective_labeler()
    if described:
        return described
    url = settings.perspective_url()
    if is_google(url):
        return "Google's Perspective API"
    from bsky_assets.lib.secrets import host_of

    return f"a self-hosted Perspective-compatible server at {host_of(url)} (not Google's)"
