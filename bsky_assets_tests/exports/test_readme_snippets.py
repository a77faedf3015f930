"""The README's "Analysing the labels" snippets, taken from the README text itself and run against
a real export: the README cannot drift from the files."""

import re
from pathlib import Path

import pytest

from bsky_assets_tests.conftest import SAMPLE_DAY
from bsky_assets_tests.exports.helpers import label_day, preferred_counts

README = Path(__file__).resolve().parents[2] / "README.md"
EXPORTS_LINE = re.compile(r'^exports = "\.bsky/exports".*$', re.MULTILINE)


def snippets() -> list[str]:
    text = README.read_text()
    section = text.split("\n## Analysing the labels\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)


def run(snippet: str, exports: Path) -> dict:
    assert EXPORTS_LINE.search(snippet), "each snippet starts from the exports folder"
    code = EXPORTS_LINE.sub(lambda _: f"exports = {str(exports)!r}", snippet)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    return namespace


def test_the_readme_has_the_duckdb_polars_and_pandas_snippets():
    found = [s.splitlines()[0] for s in snippets()]
    assert found == ["import duckdb", "import polars as pl", "import pandas as pd"]


@pytest.fixture
def exported(defs, landing_root, isolated_exports, client):
    label_day(defs, landing_root, SAMPLE_DAY)
    return isolated_exports


def _one(client, sql: str):
    return client.fetch_all(sql.format(s=client.schema), (SAMPLE_DAY,))[0][0]


def test_duckdb_snippet(exported, client):
    duckdb_snippet = next(s for s in snippets() if s.startswith("import duckdb"))
    result = run(duckdb_snippet, exported)
    counts: dict[str, int] = {}
    for labeler, _emulated, posts in result["by_labeler"]:
        counts[labeler] = counts.get(labeler, 0) + posts
    assert counts == preferred_counts(client, "perspective_labels", SAMPLE_DAY)
    expected = _one(
        client,
        "SELECT avg((prob_toxic >= 0.5)::int) FROM {s}.perspective_labels_preferred "
        "WHERE partition_date = %s AND was_successfully_labeled",
    )
    assert result["toxic_share"] == [(SAMPLE_DAY, pytest.approx(float(expected)))]


def test_polars_snippet(exported, client):
    polars_snippet = next(s for s in snippets() if s.startswith("import polars"))
    frame = run(polars_snippet, exported)["toxicity_by_lean"]
    expected = dict(
        client.fetch_all(
            f"SELECT political_ideology_label, count(*) FROM "
            f"{client.qualified('sociopolitical_labels_preferred')} "
            "WHERE partition_date = %s AND is_sociopolitical GROUP BY 1",
            (SAMPLE_DAY,),
        )
    )
    found = dict(zip(frame[frame.columns[0]].to_list(), frame["posts"].to_list(), strict=True))
    assert found == expected and sum(found.values()) > 0


def test_pandas_snippet(exported, client):
    pandas_snippet = next(s for s in snippets() if s.startswith("import pandas"))
    result = run(pandas_snippet, exported)
    assert len(result["labels"]) == sum(
        preferred_counts(client, "perspective_labels", SAMPLE_DAY).values()
    )
    expected = _one(
        client,
        "SELECT avg(coalesce((prob_toxic >= 0.5)::int, 0)) FROM {s}.perspective_labels_preferred "
        "WHERE partition_date = %s",
    )
    assert result["share_toxic"] == pytest.approx(float(expected))
