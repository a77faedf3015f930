"""The production dagster.yaml loads and works against a real Postgres."""

import shutil
import uuid
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.instance.ref import InstanceRef
from sqlalchemy.engine import URL

from bsky_assets.lib.db.client import PostgresClient

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "dagster.yaml"


@pytest.fixture
def dagster_database(admin_database_url: URL):
    """A fresh database for Dagster's own storage, dropped afterwards."""
    name = f"dagster_{uuid.uuid4().hex[:8]}"
    admin = PostgresClient(admin_database_url, "public")
    with admin.engine.connect() as conn:
        conn.connection.driver_connection.autocommit = True
        conn.connection.driver_connection.execute(f'CREATE DATABASE "{name}"')
    yield admin_database_url.set(database=name, drivername="postgresql+psycopg2")
    with admin.engine.connect() as conn:
        conn.connection.driver_connection.autocommit = True
        conn.connection.driver_connection.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_production_instance_loads_on_postgres(tmp_path, dagster_database, monkeypatch) -> None:
    shutil.copy(DEPLOY, tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_PG_URL", dagster_database.render_as_string(hide_password=False))
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(tmp_path))) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
        limits = instance.get_concurrency_config()
        assert limits.run_queue_config.max_concurrent_runs == 8
        assert limits.pool_config.default_pool_limit == 1

        # storage really works: a run is recorded and read back from Postgres
        @dg.asset
        def probe() -> int:
            return 1

        result = dg.materialize([probe], instance=instance)
        assert result.success
        assert instance.get_run_by_id(result.run_id).is_success
