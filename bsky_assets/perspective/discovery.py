"""The bundled commentanalyzer v1alpha1 discovery document, pointed at a server.

google-api-python-client ships no discovery document for this API, and its
`new_batch_http_request()` posts to the document's `rootUrl + "batch"` whatever
`client_options.api_endpoint` says. So the client, the compatible server and the bench all build
from this faithful copy with `rootUrl` rewritten here, in one place: no request meant for a
self-hosted server can ever reach Google.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from importlib.resources import files
from typing import Any
from urllib.parse import urlsplit

GOOGLE_HOST = "commentanalyzer.googleapis.com"


def is_google(url: str) -> bool:
    """True only for Google's own Perspective host (an exact match, not a suffix)."""
    return (urlsplit(url).hostname or "").lower() == GOOGLE_HOST


@cache
def bundled_discovery_document() -> dict[str, Any]:
    """The faithful copy of Google's commentanalyzer v1alpha1 discovery document."""
    path = files("bsky_assets.perspective").joinpath("commentanalyzer.v1alpha1.json")
    return json.loads(path.read_text(encoding="utf-8"))


def discovery_document_for(base_url: str) -> dict[str, Any]:
    """The bundled document with rootUrl (and so the batch endpoint) set to `base_url`."""
    root = base_url.rstrip("/") + "/"
    document = copy.deepcopy(bundled_discovery_document())
    document["rootUrl"] = root
    document["baseUrl"] = root
    if not is_google(root):
        document.pop("mtlsRootUrl", None)
    return document
