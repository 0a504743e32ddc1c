"""Dependencies point one way (the module map in ``server/__init__.py``), checked on the source.

Every ``import`` counts, wherever it sits (module level, inside a function, under
``TYPE_CHECKING``): a lazy import hides a dependency from the reader, not from the design.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# The domains: each a package with its own tables (models.py), rules (service.py) and routes (api.py).
DOMAINS = {"users", "notifications", "gamification", "learning", "catalog", "forum", "feedback", "flashcards",
           "editing", "media", "web"}
# What composes the app out of the rest: nothing below may import these.
# server.live_events assembles each domain's live-event models (as server.models does their tables).
ASSEMBLY = {"server.app", "server.infra", "server.problems", "server.middleware", "server.ws", "server.models",
            "server.live_events", "server.cli", "server.__main__", "server.demo", "server.migrate"}
# Core modules that may use a domain's code (not only its tables), and why.
CORE_USES_DOMAIN = {
    # Services holds the per-process outline cache; the module imports nothing of the server.
    ("server.state", "server.catalog.outline_cache"),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> Iterator[str]:
    """Every module ``path`` imports (``from a.b import c`` yields ``a.b`` and ``a.b.c``)."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def graph() -> dict[str, set[str]]:
    """Module -> the project modules (server, collab, realtime) it imports."""
    found: dict[str, set[str]] = {}
    for top in ("server", "collab", "realtime"):
        for path in sorted((ROOT / top).rglob("*.py")):
            found[module_name(path)] = {name for name in imports(path)
                                        if name.split(".")[0] in ("server", "collab", "realtime")}
    modules = set(found)
    # keep modules only (drop the imported names that are functions or classes)
    return {mod: {name if name in modules else name.rpartition(".")[0] for name in names} & modules
            for mod, names in found.items()}


def domain_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[0] == "server" and parts[1] in DOMAINS else None


def is_models(module: str) -> bool:
    return module.endswith(".models") and module != "server.models"


def in_assembly(module: str) -> bool:
    return any(module == name or module.startswith(name + ".") for name in ASSEMBLY)


def test_the_domains_listed_are_the_domain_packages() -> None:
    packages = {path.parent.name for path in (ROOT / "server").glob("*/__init__.py")}
    assert packages == DOMAINS | {"outbox", "ws"}, "a new package: add it to DOMAINS or to the map"


def test_collab_and_realtime_stand_alone() -> None:
    """Libraries the server builds on: they import neither the server nor each other."""
    bad = [(mod, dep) for mod, deps in graph().items() for dep in deps
           if mod.split(".")[0] in ("collab", "realtime") and dep.split(".")[0] != mod.split(".")[0]]
    assert bad == []


def test_nothing_imports_the_assembly() -> None:
    """server.app and its helpers compose the rest; only the CLI names create_app (as a string)."""
    bad = [(mod, dep) for mod, deps in graph().items() for dep in deps
           if in_assembly(dep) and not in_assembly(mod)]
    assert bad == []


def test_tables_import_only_the_database_base() -> None:
    """Models are the schema layer under all code: a table refers to another by name only."""
    found = graph()
    bad = [(mod, dep) for mod, deps in found.items() if is_models(mod) for dep in deps if dep != "server.db"]
    assert bad == []
    assert found["server.db"] == set()


def test_core_uses_domain_tables_only() -> None:
    """Core modules (errors, http, auth, access, state, outbox…) may read domain tables, never domain code."""
    bad = [(mod, dep) for mod, deps in graph().items()
           if mod.startswith("server") and domain_of(mod) is None and not in_assembly(mod) and not is_models(mod)
           for dep in deps if domain_of(dep) is not None and not is_models(dep)
           and (mod, dep) not in CORE_USES_DOMAIN]
    assert bad == []


def test_no_cycle_between_domains() -> None:
    """Domain code calls other domains one way (tables, a layer below, excepted)."""
    edges: dict[str, set[str]] = {name: set() for name in DOMAINS}
    for mod, deps in graph().items():
        src = domain_of(mod)
        for dep in deps:
            dst = domain_of(dep)
            if src is not None and dst is not None and src != dst and not is_models(dep):
                edges[src].add(dst)
    # depth-first search; a back edge is a cycle
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        state[node] = 2
        path.pop()
        return None

    for start in sorted(DOMAINS):
        if start not in state:
            cycle = visit(start)
            assert cycle is None, " -> ".join(cycle)


def test_the_parser_sees_every_kind_of_import() -> None:
    """A check that sees nothing passes vacuously."""
    found = graph()
    assert "server.ws.wiring" in found["server.app"]  # inside a function
    assert "server.outbox.drain" in found["server.state"]  # under TYPE_CHECKING
    assert "collab.protocol" in found["collab.room"]  # ``from collab import protocol``
    assert {"server.outbox.models", "server.db"} <= found["server.models"]
