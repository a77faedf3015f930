"""The queries on the day's labelling lease: one labelling run per (label table, day)."""

from __future__ import annotations

from datetime import date

from bsky_assets.lib.db.client import PostgresClient
from bsky_assets.lib.labelling.tables import LABELLING_LEASES


def take_lease(
    client: PostgresClient, table: str, day: date, holder: str, ttl_seconds: float
) -> str:
    """Take the (table, day) lease if it is free or its holder's heartbeat is older than
    `ttl_seconds`; return the holder now recorded (ours when we got it)."""
    client.ensure_table(LABELLING_LEASES)
    rows = client.execute_returning(
        f"INSERT INTO {client.qualified(LABELLING_LEASES.name)} AS l "
        "(label_table, partition_date, holder, acquired_at, heartbeat_at) "
        "VALUES (%(table)s, %(day)s, %(holder)s, now(), now()) "
        "ON CONFLICT (partition_date, label_table) DO UPDATE SET holder = EXCLUDED.holder, "
        "acquired_at = now(), heartbeat_at = now() "
        "WHERE l.holder = EXCLUDED.holder "
        "OR l.heartbeat_at < now() - make_interval(secs => %(ttl)s) RETURNING holder",
        {"table": table, "day": day, "holder": holder, "ttl": ttl_seconds},
    )
    if rows:
        return str(rows[0][0])
    current = lease_holder(client, table, day)
    return current[0] if current else ""


def lease_holder(client: PostgresClient, table: str, day: date) -> tuple[str, float] | None:
    """(holder, seconds since its last heartbeat) of the (table, day) lease, if any."""
    client.ensure_table(LABELLING_LEASES)
    rows = client.fetch_all(
        "SELECT holder, extract(epoch FROM now() - heartbeat_at) "
        f"FROM {client.qualified(LABELLING_LEASES.name)} "
        "WHERE label_table = %s AND partition_date = %s",
        (table, day),
    )
    return (str(rows[0][0]), float(rows[0][1])) if rows else None


def renew_lease(client: PostgresClient, table: str, day: date, holder: str) -> bool:
    """Record a heartbeat; False when the lease is no longer ours."""
    return (
        client.execute(
            f"UPDATE {client.qualified(LABELLING_LEASES.name)} SET heartbeat_at = now() "
            "WHERE label_table = %s AND partition_date = %s AND holder = %s",
            (table, day, holder),
        )
        == 1
    )


def release_lease(client: PostgresClient, table: str, day: date, holder: str) -> None:
    client.execute(
        f"DELETE FROM {client.qualified(LABELLING_LEASES.name)} "
        "WHERE label_table = %s AND partition_date = %s AND holder = %s",
        (table, day, holder),
    )
