"""The documentation stays inside the repository and current with the code.

Two promises are checked here. First, every relative link in the repository's markdown
resolves to a file in the repository (and an ``#anchor`` to a heading of that file), and no
doc, docstring or comment sends the reader to a path outside the repository: a clone must be
enough to understand the project. Second, ``docs/INTERFACES.md`` names every command and
option, every API endpoint, every metric and every config key the code has, with the config
defaults the code uses, so the contract cannot silently fall behind the code.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]
INTERFACES = ROOT / "docs/INTERFACES.md"

#: Folders that hold no documentation of ours (tools, environments, npm packages).
SKIPPED_PARTS = frozenset({".venv", "node_modules", "build", "dist", "__pycache__"})


def skipped(part: str) -> bool:
    return part in SKIPPED_PARTS or part.startswith(".") or part.endswith(".egg-info")


def files(top: Path, suffix: str) -> list[Path]:
    """The files under ``top`` ending in ``suffix``, not descending into skipped folders."""
    found = []
    for folder, subfolders, names in os.walk(top):
        subfolders[:] = [d for d in subfolders if not skipped(d)]
        found += [Path(folder) / n for n in names if n.endswith(suffix)]
    return sorted(found)


MARKDOWN = files(ROOT, ".md")
SOURCES = [
    p for folder in ("protocol", "node", "tests", "bench") for p in files(ROOT / folder, ".py")
]
SOURCES += sorted(p for p in (ROOT / "scripts").iterdir() if p.is_file())


def name(path: Path) -> str:
    return str(path.relative_to(ROOT))


# --------------------------------------------------------------------------------------------
# Markdown: links and anchors

_FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1[ \t]*$", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_INLINE_LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE_LINK = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.MULTILINE)
_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+?)[ \t#]*$", re.MULTILINE)


def prose(text: str) -> str:
    """Markdown without its code blocks (their ``#`` lines are not headings)."""
    return _FENCE.sub("", text)


def links(text: str) -> list[str]:
    body = _CODE_SPAN.sub("", prose(text))
    return _INLINE_LINK.findall(body) + _REFERENCE_LINK.findall(body)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link shows its text
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    seen: dict[str, int] = {}
    out = set()
    for heading in _HEADING.findall(prose(path.read_text(encoding="utf-8"))):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    return frozenset(out)


def test_slugs_follow_github() -> None:
    assert slug("8. Views: what the records mean") == "8-views-what-the-records-mean"
    assert slug("4.4 Text forms") == "44-text-forms"
    assert slug("Bundles: import, verify and POST /api/v1/bundles") == (
        "bundles-import-verify-and-post-apiv1bundles"
    )
    assert slug("`project` — a project's genesis") == "project--a-projects-genesis"


def test_links_skip_code() -> None:
    text = "[a](x.md) `[b](y.md)`\n```\n[c](z.md)\n# not a heading\n```\n[d]: w.md\n"
    assert links(text) == ["x.md", "w.md"]


def test_there_is_documentation_to_check() -> None:
    names = {name(p) for p in MARKDOWN}
    assert {"README.md", "docs/RECORD-FORMAT.md", "docs/INTERFACES.md"} <= names


@pytest.mark.parametrize("doc", MARKDOWN, ids=name)
def test_every_relative_link_resolves_inside_the_repository(doc: Path) -> None:
    broken = []
    for target in links(doc.read_text(encoding="utf-8")):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
            continue
        path_part, _, anchor = target.partition("#")
        file = (doc.parent / path_part).resolve() if path_part else doc
        if not file.is_relative_to(ROOT):
            broken.append(f"{target}: outside the repository")
        elif not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading #{anchor} in {name(file)}")
    assert not broken, f"{name(doc)}: " + "; ".join(broken)


# --------------------------------------------------------------------------------------------
# Nothing points outside the repository

#: Paths that exist only on the machines the project was first written on (the character
#: classes keep this pattern from matching its own source).
_OUTSIDE = re.compile(r"\.\./share[d]|shared/desig[n]|/wor[k]/|libp2p-guid[e]\.md")
#: A document of ours named without its folder, as if it lived somewhere else.
_BARE_DOC = re.compile(r"(?<![\w/.-])(RECORD-FORMAT|INTERFACES|PROTOCOL)\.md")
_LINK = re.compile(r"\[[^\]]*\]\([^)]*\)")


@pytest.mark.parametrize("path", MARKDOWN + SOURCES, ids=name)
def test_nothing_points_outside_the_repository(path: Path) -> None:
    text = path.read_text(encoding="utf-8", errors="replace")
    outside = sorted({m.group(0) for m in _OUTSIDE.finditer(text)})
    assert not outside, f"{name(path)} mentions paths outside the repository: {outside}"
    if path.parent != ROOT / "docs":
        if path.suffix == ".md":  # a link's text may name the file its checked target is
            text = _LINK.sub("", text)
        bare = sorted({m.group(0) for m in _BARE_DOC.finditer(text)})
        assert not bare, f"{name(path)} names {bare} without its folder: write docs/..."


# --------------------------------------------------------------------------------------------
# docs/INTERFACES.md is current


@cache
def interfaces() -> str:
    return INTERFACES.read_text(encoding="utf-8")


def commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[str, list[str]]]:
    """Every leaf command (``commons project create``) and its long options."""
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for group in groups:
        for word, sub in group.choices.items():
            yield from commands(sub, (*path, word))
    if not groups:
        options = [o for a in parser._actions for o in a.option_strings if o.startswith("--")]
        yield " ".join(("commons", *path)), options


def cli_commands() -> list[tuple[str, list[str]]]:
    from node.cli.main import build_parser

    return list(commands(build_parser()))


@pytest.mark.parametrize(
    ("command", "options"), cli_commands(), ids=[command for command, _ in cli_commands()]
)
def test_every_command_and_option_is_documented(command: str, options: list[str]) -> None:
    rows = [
        line
        for line in interfaces().splitlines()
        if line.startswith(f"| `{command} ") or line.startswith(f"| `{command}`")
    ]
    assert rows, f"docs/INTERFACES.md has no table row for `{command}`"
    missing = [o for o in options if o not in ("--help", "--home", "--json") and o not in rows[0]]
    assert not missing, f"the row for `{command}` does not name {missing}"


def test_the_global_options_are_documented() -> None:
    for option in ("--home DIR", "--json"):
        assert option in interfaces()


def api_routes() -> list[str]:
    from node.api.app import build_app

    home = SimpleNamespace(api_token=lambda: "token", tokens_path=ROOT / "no-such-tokens.json")
    app = build_app(SimpleNamespace(home=home))  # type: ignore[arg-type]
    return sorted(
        f"{method} {route.path}"
        for route in app.routes
        for method in route.methods  # type: ignore[attr-defined]
        if method != "HEAD"
    )


def _placeholders(text: str) -> str:
    return re.sub(r"\{[a-z]+\}", "{}", text)


def test_every_api_endpoint_is_documented_and_no_other() -> None:
    routes = {_placeholders(r) for r in api_routes()}
    text = _placeholders(interfaces())
    missing = sorted(r for r in routes if f"`{r}" not in text)
    assert not missing, f"endpoints missing from docs/INTERFACES.md: {missing}"
    documented = set(re.findall(r"`((?:GET|POST) /[^`?\s]*)", text))
    extra = sorted(documented - routes)
    assert not extra, f"docs/INTERFACES.md names endpoints the API lacks: {extra}"
    for doc in (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))):
        paths = set(re.findall(r"/api/v1/[a-z0-9/{}_-]*[a-z}]", _placeholders(doc.read_text())))
        known = {r.split(" ", 1)[1] for r in routes}
        assert paths <= known, f"{name(doc)} names unknown API paths {sorted(paths - known)}"


def metrics_in_code() -> set[str]:
    from node.metrics import _HELP

    found = set(_HELP)
    call = re.compile(r"\.(?:inc|gauge)\(\s*\"(commons_[a-z0-9_]+)\"")
    for source in sorted((ROOT / "node").rglob("*.py")):
        found.update(call.findall(source.read_text(encoding="utf-8")))
    return found


def test_every_metric_is_documented_and_no_other() -> None:
    in_code = metrics_in_code()
    documented = set(re.findall(r"`((?:commons|process)_[a-z0-9_]+)`", interfaces()))
    missing, extra = sorted(in_code - documented), sorted(documented - in_code)
    assert not missing, f"metrics missing from docs/INTERFACES.md: {missing}"
    assert not extra, f"docs/INTERFACES.md names metrics the node lacks: {extra}"


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return str(value)


def config_keys() -> list[tuple[str, str]]:
    from node import home

    defaults = home.Config()
    tables = {
        "node": home._NODE_KEYS,
        "limits": home._LIMIT_KEYS,
        "policy": home._POLICY_KEYS,
        "relay": home._RELAY_KEYS,
    }
    return [
        (f"{table}.{key}", toml_value(getattr(defaults, key)))
        for table, keys in tables.items()
        for key in keys
    ]


@pytest.mark.parametrize(("key", "default"), config_keys())
def test_every_config_key_is_documented_with_its_default(key: str, default: str) -> None:
    rows = [line for line in interfaces().splitlines() if line.startswith(f"| `{key}` |")]
    assert rows, f"docs/INTERFACES.md has no row for config key {key}"
    assert f"`{default}`" in rows[0], f"the row for {key} does not give its default {default}"


def test_the_written_config_file_uses_the_documented_defaults() -> None:
    import tomllib

    from node import home

    written = tomllib.loads(home.DEFAULT_CONFIG)
    for key, default in config_keys():
        table, _, field = key.partition(".")
        assert toml_value(written[table][field]) == default, key
