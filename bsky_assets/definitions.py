"""The code location: assets, resources, job and sensor."""

import dagster as dg

from bsky_assets.assets import posts
from bsky_assets.jobs import label_posts_job
from bsky_assets.resources.landing import LandingFolder
from bsky_assets.resources.postgres import PostgresResource
from bsky_assets.resources.postgres_io_manager import PostgresIOManager
from bsky_assets.sensors.landing_sensor import landing_sensor


def build_definitions(
    postgres: PostgresResource | None = None, landing: LandingFolder | None = None
) -> dg.Definitions:
    """The project's definitions; tests pass their own database and landing folder."""
    postgres = postgres or PostgresResource()
    return dg.Definitions(
        assets=[posts.landing_batches, *dg.load_assets_from_modules([posts])],
        jobs=[label_posts_job],
        sensors=[landing_sensor],
        resources={
            "postgres": postgres,
            "postgres_io_manager": PostgresIOManager(postgres=postgres),
            "landing": landing or LandingFolder(),
        },
    )


defs = build_definitions()
