"""The shape of the package, checked: which room may import which, where SQL and the environment
are read, and that nothing reads the environment when a module is imported.

Rooms (README "Layout"): the shared library (`lib/`: database, labelling engine, calls,
secrets) never imports a domain; domains (posts, perspective, llm and its tasks, valence,
successor, evaluation, exports) never import the tools (the local servers, bench, demo, CLI) or
the root (definitions, jobs); in the library and the domains only `lib/db/` and the stores
(`store.py` modules, `store/` packages) write SQL (the tools' throw-away bench schemas and the
seed's replica are theirs to write); only `settings.py` reads the environment, and only when called.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "bsky_assets"
LIBRARY = {"lib", "settings"}
DOMAINS = {
    "posts", "perspective", "llm", "sociopolitical", "intergroup", "valence", "successor",
    "evaluation", "exports",
}  # fmt: skip
TOOLS = {"servers", "tools", "cli", "definitions", "jobs"}
SQL = re.compile(
    r"\b(SELECT\s.+\sFROM|INSERT\s+INTO|UPDATE\s+\S+\s+SET|DELETE\s+FROM|CREATE\s+(TEMP\s+)?"
    r"(TABLE|VIEW|INDEX|SCHEMA)|ALTER\s+TABLE|ANALYZE\s|COPY\s.+\sFROM\sSTDIN)",
    re.IGNORECASE | re.DOTALL,
)


def modules() -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE), ast.parse(path.read_text(), str(path))


def room(relative: Path) -> str:
    return relative.parts[0].removesuffix(".py")


def imported(tree: ast.Module) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def project_rooms(tree: ast.Module) -> set[str]:
    return {
        name.split(".")[1]
        for name in imported(tree)
        if name.startswith("bsky_assets.") and len(name.split(".")) > 1
    }


def test_every_module_sits_in_a_known_room() -> None:
    known = LIBRARY | DOMAINS | TOOLS | {"__init__"}
    assert sorted({room(path) for path, _ in modules()} - known) == []


def test_the_library_never_imports_a_domain_or_a_tool() -> None:
    offenders = [
        f"{path}: {other}"
        for path, tree in modules()
        if room(path) in LIBRARY
        for other in sorted(project_rooms(tree) - LIBRARY)
    ]
    assert offenders == []


def test_domains_never_import_the_tools_or_the_root() -> None:
    offenders = [
        f"{path}: {other}"
        for path, tree in modules()
        if room(path) in DOMAINS
        for other in sorted(project_rooms(tree) & TOOLS)
    ]
    assert offenders == []


def _strings(tree: ast.Module) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = "".join(
                v.value if isinstance(v, ast.Constant) and isinstance(v.value, str) else "{}"
                for v in node.values
            )
            yield node.lineno, text
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def _docstrings(tree: ast.Module) -> set[int]:
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                lines.add(body[0].value.lineno)
    return lines


def sql_outside_the_stores(path: Path, tree: ast.Module) -> list[str]:
    """Postgres SQL in a library or domain module that is not `lib/db/` or a store; DuckDB
    snippets shown to researchers (`read_parquet`) are documentation, not queries we run."""
    if room(path) not in LIBRARY | DOMAINS:
        return []
    if path.parts[:2] == ("lib", "db") or path.name == "store.py" or "store" in path.parts[:-1]:
        return []
    docstrings = _docstrings(tree)
    return sorted(
        {
            f"{path}:{line}"
            for line, text in _strings(tree)
            if line not in docstrings and SQL.search(text) and "read_parquet(" not in text
        }
    )


def test_sql_is_written_only_in_the_database_library_and_the_stores() -> None:
    assert [o for path, tree in modules() for o in sql_outside_the_stores(path, tree)] == []


def test_the_sql_rule_sees_sql_where_it_does_not_belong() -> None:
    """The rule above can fail: a query in an asset module is caught, the same in a store or a
    DuckDB snippet is not."""
    query = ast.parse('q = f"SELECT uri FROM {table} WHERE partition_date = %s"')
    assert sql_outside_the_stores(Path("posts/assets.py"), query) == ["posts/assets.py:1"]
    assert sql_outside_the_stores(Path("posts/store.py"), query) == []
    assert sql_outside_the_stores(Path("lib/labelling/store/leases.py"), query) == []
    snippet = ast.parse("q = \"SELECT count(*) FROM read_parquet('x/*.parquet')\"")
    assert sql_outside_the_stores(Path("exports/dictionary.py"), snippet) == []


def test_only_settings_reads_the_environment() -> None:
    offenders = []
    for path, tree in modules():
        if path == Path("settings.py"):
            continue
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in {"environ", "getenv"}
                and isinstance(node.value, ast.Name)
                and node.value.id == "os"
            ):
                offenders.append(f"{path}:{node.lineno}")
    assert offenders == []


def _import_time_nodes(tree: ast.Module) -> Iterator[ast.AST]:
    """What runs when the module is imported: module and class bodies, decorators, defaults and
    annotations of functions, never function bodies."""
    pending: list[ast.AST] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            pending += [*node.decorator_list, *node.args.defaults, *node.args.kw_defaults]
            continue
        if isinstance(node, ast.ClassDef):
            pending += [*node.decorator_list, *node.bases, *node.body]
            continue
        if isinstance(node, ast.Lambda):
            continue
        yield node
        pending += [child for child in ast.iter_child_nodes(node) if child is not None]


def test_no_module_reads_a_setting_when_it_is_imported() -> None:
    offenders = []
    for path, tree in modules():
        for node in _import_time_nodes(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "settings"
            ):
                offenders.append(f"{path}:{node.lineno}: settings.{node.func.attr}()")
    assert offenders == []


def test_no_private_dagster_imports() -> None:
    offenders = [
        f"{path}: {name}"
        for path, tree in modules()
        for name in imported(tree)
        if name.startswith("dagster._")
    ]
    assert offenders == []


def test_every_import_of_the_project_resolves() -> None:
    """Imports inside functions (kept lazy so the CLI starts fast) are not run by importing a
    module: a name moved in a refactor must still fail here, not in a user's shell."""
    import importlib

    missing = []
    for path, tree in modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if not node.module.startswith("bsky_assets"):
                    continue
                module = importlib.import_module(node.module)
                for alias in node.names:
                    if not hasattr(module, alias.name):
                        try:
                            importlib.import_module(f"{node.module}.{alias.name}")
                        except ImportError:
                            missing.append(f"{path}:{node.lineno}: {node.module}.{alias.name}")
    assert missing == []
