"""Each server the bench measures against runs in its own process, as in production."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from typing import Any

from bsky_assets.servers.http import free_port


class ServerProcess:
    """A `bsky-assets serve ...` process; stopped on exit."""

    def __init__(self, kind: str, *args: str) -> None:
        self.port = free_port()
        command = [sys.executable, "-m", "bsky_assets.cli", "serve", kind, "--port", str(self.port)]
        self.process = subprocess.Popen(
            [*command, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        suffix = "/healthz" if kind == "perspective" else "/v1/models"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}{suffix}", timeout=1)
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"{kind} server did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "/stats", timeout=5) as response:
            return json.load(response)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
