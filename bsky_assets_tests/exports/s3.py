"""A real S3-compatible server on loopback for the export tests (moto's, from PyPI)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

BUCKET = "bsky-exports"


@dataclass
class S3:
    endpoint: str
    secret: str

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id="test-access-key",
            aws_secret_access_key=self.secret,
            region_name="us-east-1",
        )

    def environment(self) -> dict[str, str]:
        """The AWS_* variables an export reads its credentials and endpoint from."""
        return {
            "AWS_ACCESS_KEY_ID": "test-access-key",
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.endpoint,
        }

    def keys(self, prefix: str = "") -> list[str]:
        listed = self.client().list_objects_v2(Bucket=BUCKET, Prefix=prefix)
        return sorted(o["Key"] for o in listed.get("Contents", []))


@pytest.fixture
def s3() -> Iterator[S3]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        found = S3(f"http://{host}:{port}", f"secret-{secrets.token_hex(12)}")
        found.client().create_bucket(Bucket=BUCKET)
        saved = {k: os.environ.get(k) for k in found.environment()}
        os.environ.update(found.environment())
        yield found
        for key, value in saved.items():
            os.environ.pop(key, None)
            if value is not None:
                os.environ[key] = value
    finally:
        server.stop()
