"""Run `dagster dev` from the repository root for end-to-end tests, in its own process group."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bsky_assets.servers.http import free_port
from bsky_assets.tools.instance import ensure_local_instance

REPO = Path(__file__).resolve().parents[1]


class DagsterDev:
    def __init__(
        self, home: Path, environment: dict[str, str], instance: dict | None = None
    ) -> None:
        self.home = home
        self.instance = instance
        self.port = free_port()
        self.environment = environment
        self.log = home / "dagster-dev.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "DagsterDev":
        ensure_local_instance(self.home, self.instance)  # what `bsky-assets dev` runs with
        env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
        env |= self.environment | {"DAGSTER_HOME": str(self.home)}
        dagster = str(Path(sys.executable).parent / "dagster")
        self.process = subprocess.Popen(
            [dagster, "dev", "-h", "127.0.0.1", "-p", str(self.port)],
            cwd=REPO,  # loads the code location through workspace.yaml
            env=env,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as a whole
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dagster dev exited:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/server_info", timeout=2):
                    return self
            except OSError:
                time.sleep(1)
        self.__exit__()
        raise TimeoutError(f"dagster dev did not start:\n{self.log.read_text()[-3000:]}")

    def __exit__(self, *exc: object) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        group = os.getpgid(self.process.pid)
        os.killpg(group, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(group, signal.SIGKILL)
            self.process.wait(timeout=10)
        time.sleep(1)
        with contextlib.suppress(ProcessLookupError):  # code servers, daemon: the whole group
            os.killpg(group, signal.SIGKILL)


def wait_for(predicate, timeout: float, what: str, every: float = 1.0):
    """Poll `predicate` until it returns something truthy (returned), or fail naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def graphql(dev: DagsterDev, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(
        dev.url + "/graphql", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        payload = json.load(response)
    assert "errors" not in payload, payload
    return payload["data"]


def runs(dev: DagsterDev) -> list[dict]:
    data = graphql(
        dev, "{ runsOrError { ... on Runs { results { runId status tags { key value } } } } }"
    )
    return [
        {"id": r["runId"], "status": r["status"], "tags": {t["key"]: t["value"] for t in r["tags"]}}
        for r in data["runsOrError"]["results"]
    ]


BACKFILL_ENDED = {"COMPLETED", "COMPLETED_SUCCESS", "FAILED", "CANCELED", "COMPLETED_FAILED"}


def backfill_status(dev: DagsterDev, backfill_id: str) -> str | None:
    """The backfill's status once it has ended, else None (a `wait_for` predicate)."""
    status = graphql(
        dev,
        "query($id: String!) { partitionBackfillOrError(backfillId: $id) "
        "{ ... on PartitionBackfill { status } } }",
        {"id": backfill_id},
    )["partitionBackfillOrError"]["status"]
    return status if status in BACKFILL_ENDED else None
