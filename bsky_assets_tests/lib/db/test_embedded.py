"""Database URLs: explicit drivers, and the embedded default when DATABASE_URL is unset."""

import logging
import os
import stat

import pytest
from sqlalchemy.engine import URL

from bsky_assets.lib.db.connection import resolve_database_url
from bsky_assets.lib.db.embedded import to_libpq_url, to_sqlalchemy_url


@pytest.mark.parametrize(
    "given",
    [
        "postgresql://u:p@db.example:5432/labels",
        "postgres://u:p@db.example:5432/labels",
        "postgresql+psycopg2://u:p@db.example:5432/labels",
    ],
)
def test_every_postgres_url_gets_the_explicit_psycopg3_driver(given: str) -> None:
    url = to_sqlalchemy_url(given)
    assert url.drivername == "postgresql+psycopg"
    assert (url.host, url.port, url.database, url.password) == ("db.example", 5432, "labels", "p")
    assert to_libpq_url(url) == "postgresql://u:p@db.example:5432/labels"


def test_non_postgres_urls_are_refused() -> None:
    with pytest.raises(ValueError, match="must point at Postgres"):
        to_sqlalchemy_url("sqlite:///labels.db")


def test_database_url_from_the_environment_gets_the_explicit_driver(monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@somewhere:6543/x")
    assert resolve_database_url().render_as_string() == "postgresql+psycopg://u@somewhere:6543/x"


def test_embedded_server_when_database_url_is_unset(
    monkeypatch, tmp_path, database_url: URL, caplog
):
    """Without DATABASE_URL the project starts its own Postgres in the data dir; as root it says
    which folders pgserver opened to other users, and the pipeline's role is no superuser."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("BSKY_DATA_DIR", str(tmp_path))
    tmp_path.chmod(0o700)
    caplog.set_level(logging.WARNING)
    from bsky_assets.lib.db.embedded import stop_embedded_server

    try:
        url = resolve_database_url()
        assert url.query["host"] == str(tmp_path / "postgres")
        from bsky_assets.lib.db.client import PostgresClient

        client = PostgresClient(url, "bsky")
        assert client.fetch_all("SELECT rolsuper FROM pg_roles WHERE rolname = current_user") == [
            (False,)
        ]
        assert stat.S_IMODE((tmp_path / "postgres-pipeline.credentials").stat().st_mode) == 0o600
        if os.geteuid() == 0:  # pgserver runs Postgres as its own user, which must reach pgdata
            assert "traversable by other users" in caplog.text and str(tmp_path) in caplog.text
        else:
            assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o700
    finally:
        stop_embedded_server(tmp_path / "postgres")


def test_pgserver_is_imported_without_a_runtime_dir_warning() -> None:
    """Without XDG_RUNTIME_DIR (a non-login shell, CI, a container: where the demo runs)
    importing pgserver warns RuntimeDirWarning; the project imports it quietly (21.10)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    completed = subprocess.run(
        [sys.executable, "-W", "default", "-c",
         "from bsky_assets.lib.db.embedded import _pgserver; _pgserver()"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert "RuntimeDirWarning" not in completed.stderr, completed.stderr
