"""The code location: every domain's assets, the labellers, resources, the job and the sensors.

Everything that depends on the environment (the first partition, which labellers are on,
whether the failure-rate check blocks, the landing folder the UI names) is read here, once, when
the definitions are built; no module reads it when imported.
"""

import os

import dagster as dg

from bsky_assets import settings
from bsky_assets.evaluation.assets import evaluation_assets
from bsky_assets.exports.asset import label_exports_asset
from bsky_assets.intergroup.task import INTERGROUP_LABELLER
from bsky_assets.jobs import LABEL_POSTS, label_posts_job
from bsky_assets.lib.db.io_manager import PostgresIOManager
from bsky_assets.lib.db.resource import PostgresResource
from bsky_assets.lib.dead_runs import dead_run_sensor
from bsky_assets.lib.labelling.engine import label_asset
from bsky_assets.lib.labelling.labeller import Labeller
from bsky_assets.lib.partitions import daily_partitions
from bsky_assets.lib.secrets import protect_logs
from bsky_assets.llm.labeller import LLMLabeller
from bsky_assets.llm.resource import LLMResource
from bsky_assets.perspective.agreement import agreement_asset
from bsky_assets.perspective.labeller import PerspectiveLabeller
from bsky_assets.perspective.resource import PerspectiveResource
from bsky_assets.posts.assets import posts_assets
from bsky_assets.posts.resource import LandingFolder
from bsky_assets.posts.sensor import landing_sensor
from bsky_assets.posts.source import VALID_POSTS_SOURCE
from bsky_assets.sociopolitical.labeller import SOCIOPOLITICAL_LABELLER
from bsky_assets.successor.asset import perspective_successor
from bsky_assets.valence.labeller import ValenceLabeller

# Every labeller of the project, one line each (lib/labelling/labeller.py says what one is);
# BSKY_LABELLERS says which are on (settings.labellers()).
LABELLERS: tuple[Labeller, ...] = (
    PerspectiveLabeller(),
    SOCIOPOLITICAL_LABELLER,
    ValenceLabeller(),
    INTERGROUP_LABELLER,
)


def labeller_name(labeller: Labeller) -> str:
    return labeller.name.removesuffix("_labels")


def enabled_labellers(names: tuple[str, ...]) -> tuple[Labeller, ...]:
    known = {labeller_name(labeller): labeller for labeller in LABELLERS}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise settings.ConfigurationError(
            f"BSKY_LABELLERS names unknown labellers {unknown}; known: {', '.join(known)}"
        )
    return tuple(known[name] for name in names)


# Each step still runs in a process of its own (its memory is its own, and the label steps run
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
    labellers: tuple[Labeller, ...] | None = None,
) -> dg.Definitions:
    """The project's definitions; tests pass their own database, landing folder, servers and
    labellers. Keys and destinations are never part of resource config: resources read them in
    the run (settings.py)."""
    os.umask(0o077)  # files this code location's processes create are the user's alone
    for key in settings.secret_values():  # every process that loads the code location
        protect_logs(key)
    postgres = postgres or PostgresResource()
    landing = landing or LandingFolder()
    partitions = daily_partitions(settings.partitions_start())
    blocks = settings.failure_rate_blocks()
    labellers = enabled_labellers(settings.labellers()) if labellers is None else labellers
    on = [labeller_name(labeller) for labeller in labellers]
    off = [labeller_name(lab) for lab in LABELLERS if labeller_name(lab) not in on]
    return dg.Definitions(
        assets=[
            *posts_assets(partitions, landing.root),
            *(label_asset(lab, VALID_POSTS_SOURCE, partitions, blocks) for lab in labellers),
            agreement_asset(partitions),
            perspective_successor,
            label_exports_asset([labeller.table for labeller in labellers], partitions),
            # Every LLM task is evaluated against its own hand labels.
            *(
                asset
                for labeller in labellers
                if isinstance(labeller, LLMLabeller)
                for asset in evaluation_assets(labeller.task)
            ),
        ],
        jobs=[label_posts_job(on, off)],
        executor=forked_steps_executor,
        sensors=[landing_sensor(partitions, LABEL_POSTS), dead_run_sensor],
        resources={
            "postgres": postgres,
            "postgres_io_manager": PostgresIOManager(postgres=postgres),
            "landing": landing,
            "perspective": perspective or PerspectiveResource(),
            "llm": llm or LLMResource(),
        },
    )


defs = build_definitions()
