"""The one module that reads the environment.

Every variable the project understands is read here, by a function called at the moment the
value is needed (run time for resources, so `dagster dev`, a run worker and the demo all see the
same environment without import-order tricks). Two values are needed when the code location is
built and are read then: the first partition and whether the failure-rate check blocks.

Everything local (embedded Postgres, landing folder, DAGSTER_HOME, distilled models) lives under
one data dir so a researcher can find it, back it up, or delete it. Defaults are relative to the
working directory, which is the repository root for the README's commands and for `dagster dev`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

DEFAULT_SCHEMA = "bsky"
GOOGLE_PERSPECTIVE_URL = "https://commentanalyzer.googleapis.com"
OPENAI_URL = "https://api.openai.com/v1"
DEFAULT_LLM_MODEL = "gpt-4o-mini"

PERSPECTIVE_API_KEY = "PERSPECTIVE_API_KEY"  # Google's key: sent to Google's host only
PERSPECTIVE_SERVER_API_KEY = "PERSPECTIVE_SERVER_API_KEY"  # a self-hosted server's own key
OPENAI_API_KEY = "OPENAI_API_KEY"
BSKY_SERVER_API_KEY = "BSKY_SERVER_API_KEY"  # the key `bsky-assets serve ...` accepts
AWS_SECRET_ACCESS_KEY = "AWS_SECRET_ACCESS_KEY"  # object-store exports (exports/destination.py)
AWS_SESSION_TOKEN = "AWS_SESSION_TOKEN"
SECRET_VARIABLES = (
    PERSPECTIVE_API_KEY,
    PERSPECTIVE_SERVER_API_KEY,
    OPENAI_API_KEY,
    BSKY_SERVER_API_KEY,
    AWS_SECRET_ACCESS_KEY,
    AWS_SESSION_TOKEN,
)


class ConfigurationError(ValueError):
    """The environment names a destination the project refuses to send a key to."""


def _get(name: str) -> str | None:
    return os.environ.get(name) or None


def _float(name: str, default: float) -> float:
    value = _get(name)
    try:
        return float(value) if value is not None else default
    except ValueError:
        raise ValueError(f"{name} must be a number, got {value!r}") from None


# -- local state --


def data_dir() -> Path:
    """Root of all project-local state (`BSKY_DATA_DIR`, default `./.bsky`)."""
    return Path(_get("BSKY_DATA_DIR") or Path.cwd() / ".bsky").resolve()


def landing_dir() -> Path:
    """Folder researchers drop `<YYYY-MM-DD>/<batch_id>.jsonl[.gz]` files into."""
    configured = _get("BSKY_LANDING_DIR")
    return Path(configured).resolve() if configured else data_dir() / "landing"


def dagster_home() -> Path:
    """Project-local DAGSTER_HOME so run history and sensor cursors survive restarts."""
    configured = _get("DAGSTER_HOME")
    return Path(configured).resolve() if configured else data_dir() / "dagster_home"


def use_dagster_home(home: Path) -> None:
    os.environ["DAGSTER_HOME"] = str(home)


def embedded_pgdata() -> Path:
    return data_dir() / "postgres"


def models_dir() -> Path:
    """Distilled Perspective successors, one folder per model id."""
    return data_dir() / "models"


def export_destination() -> str:
    """Where label exports go (`BSKY_EXPORT_DEST`): a local folder, or an object-store URL
    (`s3://bucket/prefix`, `gs://bucket/prefix`). Default `$BSKY_DATA_DIR/exports`."""
    return _get("BSKY_EXPORT_DEST") or str(data_dir() / "exports")


def use_export_destination(destination: str) -> None:
    """Point this process's exports elsewhere (`bsky-assets export --dest`)."""
    os.environ["BSKY_EXPORT_DEST"] = destination


def export_text() -> bool:
    """Whether exports carry post text (`BSKY_EXPORT_TEXT`, default off: exports travel
    further than the database)."""
    return (_get("BSKY_EXPORT_TEXT") or "").lower() in {"1", "true", "yes"}


def s3_options() -> dict[str, str]:
    """pyarrow S3FileSystem options from the standard AWS variables, and nothing else: keys,
    region and endpoint never come from run config or a URL. Without keys the AWS SDK's own
    chain applies (the same variables, shared config, an instance or pod role)."""
    names = {
        "access_key": "AWS_ACCESS_KEY_ID",
        "secret_key": AWS_SECRET_ACCESS_KEY,
        "session_token": AWS_SESSION_TOKEN,
        "region": "AWS_REGION",
        "endpoint_override": "AWS_ENDPOINT_URL_S3",
    }
    options = {key: value for key, name in names.items() if (value := _get(name))}
    region = _get("AWS_DEFAULT_REGION")
    endpoint = _get("AWS_ENDPOINT_URL")
    if region and "region" not in options:
        options["region"] = region
    if endpoint and "endpoint_override" not in options:
        options["endpoint_override"] = endpoint
    return options


def successor_encoder() -> str | None:
    """The sentence encoder of the successor's full tier: a local folder or a Hugging Face model
    name (`BSKY_SUCCESSOR_ENCODER`); unset, the all-MiniLM-L6-v2 the pinned package ships;
    `none`: train and serve the fast tier only."""
    return _get("BSKY_SUCCESSOR_ENCODER")


def use_default_successor_encoder() -> None:
    """Forget BSKY_SUCCESSOR_ENCODER for this process (the bench measures the shipped default)."""
    os.environ.pop("BSKY_SUCCESSOR_ENCODER", None)


def device() -> str:
    """Where the encoder runs (`BSKY_DEVICE`): `auto` (a CUDA device when present, else the
    CPU), `cpu`, `cuda`, `cuda:1`, ..."""
    return _get("BSKY_DEVICE") or "auto"


def perspective_transport() -> str:
    """How perspective_labels reaches a distilled successor (`BSKY_PERSPECTIVE_TRANSPORT`):
    `http` (the default: whatever PERSPECTIVE_URL names) or `in-process:<scorer>` (score in the
    label step itself, e.g. `in-process:distilled:latest-fast`: same rows, same provenance)."""
    value = _get("BSKY_PERSPECTIVE_TRANSPORT") or "http"
    if value != "http" and not value.startswith("in-process:"):
        raise ConfigurationError(
            f"BSKY_PERSPECTIVE_TRANSPORT must be http or in-process:<scorer>, got {value!r}"
        )
    return value


# -- database --


def database_url() -> str | None:
    """DATABASE_URL, or None for the embedded Postgres."""
    return _get("DATABASE_URL")


def db_schema() -> str:
    return _get("BSKY_DB_SCHEMA") or DEFAULT_SCHEMA


# -- definition time --


def partitions_start() -> str:
    return _get("BSKY_PARTITIONS_START") or "2024-01-01"


def max_failure_rate() -> float:
    return _float("BSKY_MAX_FAILURE_RATE", 0.05)


def failure_rate_blocks() -> bool:
    return (_get("BSKY_FAILURE_RATE_BLOCKS") or "").lower() in {"1", "true", "yes"}


DEFAULT_LABELLERS = ("perspective", "sociopolitical", "valence")


def labellers() -> tuple[str, ...]:
    """Which labellers the definitions hold (`BSKY_LABELLERS`, comma-separated names): the free
    and the long-standing ones by default; a paid task such as `intergroup` only when named."""
    value = _get("BSKY_LABELLERS")
    if value is None:
        return DEFAULT_LABELLERS
    return tuple(name.strip().lower() for name in value.split(",") if name.strip())


def progress_seconds() -> float:
    """How often a labelling step logs its progress."""
    return _float("BSKY_PROGRESS_SECONDS", 30.0)


# -- labelling services --


def perspective_url() -> str:
    return _get("PERSPECTIVE_URL") or GOOGLE_PERSPECTIVE_URL


def perspective_labeler() -> str | None:
    """What the local services say their Perspective scorer is (shown in descriptions)."""
    return _get("BSKY_PERSPECTIVE_LABELER")


def perspective_requests_per_second() -> float:
    return _float("PERSPECTIVE_REQUESTS_PER_SECOND", 1.0)


def openai_base_url() -> str:
    return _get("OPENAI_BASE_URL") or OPENAI_URL


def llm_model() -> str:
    return _get("BSKY_LLM_MODEL") or DEFAULT_LLM_MODEL


def llm_mode() -> str:
    """`sync` (chat completions as the run goes) or `batch` (OpenAI's Batch API, half price)."""
    mode = (_get("BSKY_LLM_MODE") or "sync").lower()
    if mode not in {"sync", "batch"}:
        raise ConfigurationError(f"BSKY_LLM_MODE must be sync or batch, got {mode!r}")
    return mode


def llm_batch_poll_seconds() -> float:
    return _float("BSKY_LLM_BATCH_POLL_SECONDS", 30.0)


def llm_prices() -> str | None:
    """A JSON price table that overrides or extends the packaged one (llm/prices.py)."""
    return _get("BSKY_LLM_PRICES")


def llm_requests_per_minute() -> float:
    return _float("BSKY_LLM_REQUESTS_PER_MINUTE", 500.0)


def llm_tokens_per_minute() -> float:
    return _float("BSKY_LLM_TOKENS_PER_MINUTE", 200_000.0)


def perspective_configured() -> bool:
    """A real or self-hosted Perspective service was chosen (its key or its URL is set)."""
    return bool(_get(PERSPECTIVE_API_KEY) or _get("PERSPECTIVE_URL"))


def llm_configured() -> bool:
    return bool(_get(OPENAI_API_KEY) or _get("OPENAI_BASE_URL"))


def perspective_api_key() -> str | None:
    """Google's key: only ever sent to Google's host (perspective/resource.py decides)."""
    return _get(PERSPECTIVE_API_KEY)


def perspective_server_api_key() -> str | None:
    """A self-hosted Perspective-compatible server's own optional key."""
    return _get(PERSPECTIVE_SERVER_API_KEY)


def llm_target() -> dict[str, str | None]:
    """Where LLM requests go, with which key and model: the environment only."""
    return {
        "base_url": openai_base_url(),
        "api_key": _get(OPENAI_API_KEY),
        "model": llm_model(),
    }


def secret_values() -> list[str]:
    """The keys set in this environment: scrubbed from every log record, message and row."""
    return [value for name in SECRET_VARIABLES if (value := _get(name))]


def server_api_key() -> str | None:
    """The key a local API server started from the command line accepts (never from argv)."""
    value = _get(BSKY_SERVER_API_KEY)
    return value.strip() if value else None


def without_secrets(environment: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment minus every API key: for child processes that must not reach a real
    service (benchmarks, tests)."""
    source = os.environ if environment is None else environment
    return {k: v for k, v in source.items() if not k.endswith("_API_KEY")}


def overlay(values: Mapping[str, str]) -> dict[str, str | None]:
    """Set variables that are not already set; return what to hand to `restore`."""
    added = {k: v for k, v in values.items() if k not in os.environ}
    previous = {k: os.environ.get(k) for k in added}
    os.environ.update(added)
    return previous


def restore(previous: Mapping[str, str | None]) -> None:
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
