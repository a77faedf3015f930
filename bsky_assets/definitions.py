"""The code location: assets (with their checks), resources, job and sensors."""

import os

import dagster as dg

from bsky_assets import settings
from bsky_assets.assets import (
    perspective_agreement,
    perspective_labels,
    perspective_successor,
    posts,
    sociopolitical_evaluation,
    sociopolitical_labels,
)
from bsky_assets.exports.asset import label_exports
from bsky_assets.jobs import label_posts_job
from bsky_assets.resources.landing import LandingFolder
from bsky_assets.resources.llm import LLMResource
from bsky_assets.resources.perspective import PerspectiveResource
from bsky_assets.resources.postgres import PostgresResource
from bsky_assets.resources.postgres_io_manager import PostgresIOManager
from bsky_assets.secrets import protect_logs
from bsky_assets.sensors.dead_runs import dead_run_sensor
from bsky_assets.sensors.landing_sensor import landing_sensor

# Each step still runs in a process of its own (its memory is its own, and the two label steps run
# side by side), but forked from a server that has already imported Dagster and this project:
# a 300-post day's 11 steps take 10 s instead of 20 s with fresh processes (in one process: 4 s,
# but the label steps would wait for each other and share one heap). See README "Speed".
forked_steps_executor = dg.multiprocess_executor.configured(
    {"start_method": {"forkserver": {"preload_modules": ["bsky_assets.definitions"]}}},
    name="forked_steps",
)


def build_definitions(
    postgres: PostgresResource | None = None,
    landing: LandingFolder | None = None,
    perspective: PerspectiveResource | None = None,
    llm: LLMResource | None = None,
) -> dg.Definitions:
    """The project's definitions; tests pass their own database, landing folder and servers.

    Settings that default to the environment are read in the run (settings.py), so building the
    definitions early is safe. Keys and destinations are never part of resource config.
    """
    os.umask(0o077)  # files this code location's processes create are the user's alone
    for key in settings.secret_values():  # every process that loads the code location
        protect_logs(key)
    postgres = postgres or PostgresResource()
    return dg.Definitions(
        assets=[
            posts.landing_batches,
            sociopolitical_evaluation.hand_labels,
            label_exports,
            *dg.load_assets_from_modules(
                [
                    posts,
                    perspective_labels,
                    sociopolitical_labels,
                    perspective_agreement,
                    perspective_successor,
                    sociopolitical_evaluation,
                ]
            ),
        ],
        jobs=[label_posts_job],
        executor=forked_steps_executor,
        sensors=[landing_sensor, dead_run_sensor],
        resources={
            "postgres": postgres,
            "postgres_io_manager": PostgresIOManager(postgres=postgres),
            "landing": landing or LandingFolder(),
            "perspective": perspective or PerspectiveResource(),
            "llm": llm or LLMResource(),
        },
    )


defs = build_definitions()
