"""The documentation holds: its runnable blocks run, every page is reachable, the README stays short.

A fenced ```python block right after an HTML comment ``<!-- run -->`` (README.md or docs/) is
run here as written; ``<!-- run: services -->`` marks one that needs the Prefect server and Ray
cluster, run on the test session's services.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
MAX_README_LINES = 250

_MARKER = re.compile(r"^<!--\s*run\b", re.M)
_BLOCK = re.compile(r"^<!-- run(?P<services>: services)? -->\s*\n```python[^\n]*\n(?P<code>.*?)\n```", re.S | re.M)
_LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


def _pages() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def _blocks(services: bool) -> list:
    """Every marked block of that kind, as a pytest param named page:line."""
    found = []
    for page in _pages():
        text = page.read_text()
        for match in _BLOCK.finditer(text):
            if bool(match["services"]) == services:
                line = text.count("\n", 0, match.start("code")) + 1
                name = f"{page.relative_to(ROOT)}:{line}"
                found.append(pytest.param(name, match["code"], id=name))
    return found


def _run(name: str, code: str) -> None:
    # A fresh module namespace per block, as a reader pasting it into a new script would have.
    exec(compile(code, name, "exec"), {"__name__": "__docs__"})


UNIT_BLOCKS = _blocks(services=False)
SERVICE_BLOCKS = _blocks(services=True)


def test_every_run_marker_marks_a_python_block() -> None:
    """A misspelt marker or a marker before a non-Python block would silently run nothing."""
    markers = sum(len(_MARKER.findall(page.read_text())) for page in _pages())
    assert markers == len(UNIT_BLOCKS) + len(SERVICE_BLOCKS)
    assert UNIT_BLOCKS and SERVICE_BLOCKS


@pytest.mark.parametrize(("name", "code"), UNIT_BLOCKS)
def test_block_runs(name: str, code: str) -> None:
    _run(name, code)


@pytest.mark.integration
@pytest.mark.parametrize(("name", "code"), SERVICE_BLOCKS)
def test_block_runs_on_services(name: str, code: str, ray_cluster: dict) -> None:
    _run(name, code)


def test_readme_is_short() -> None:
    lines = len(README.read_text().splitlines())
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines; move detail to a page under docs/"


def _nav_pages(nav: list) -> set[str]:
    pages: set[str] = set()
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        if isinstance(value, list):
            pages |= _nav_pages(value)
        else:
            pages.add(value)
    return pages


def test_every_page_is_in_the_nav_and_linked_from_the_readme() -> None:
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    nav = _nav_pages(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])
    linked = {
        target.split("#")[0].removeprefix("docs/")
        for target in (m["target"] for m in _LINK.finditer(README.read_text()))
        if target.startswith("docs/")
    }
    assert pages - nav == set(), "pages missing from mkdocs.yml's nav"
    assert nav - pages == set(), "nav entries without a page"
    assert pages - linked == set(), "pages the README does not link"


def test_readme_links_point_at_files() -> None:
    """mkdocs checks the pages' links; the README is outside its docs folder, so it is checked here."""
    broken = [
        target
        for target in (m["target"] for m in _LINK.finditer(README.read_text()))
        if "://" not in target and not (ROOT / target.split("#")[0]).exists()
    ]
    assert broken == []


def test_configuration_reference_names_every_field() -> None:
    from wtb_prefect import config
    from wtb_prefect.settings import WTBSettings

    reference = (DOCS / "configuration.md").read_text()
    models = [
        config.ExecutionConfig,
        config.RayConfig,
        config.NodeResourceConfig,
        config.RateLimitConfig,
        config.EnvironmentConfig,
        config.EnvSpec,
        config.FileTrackingConfig,
    ]
    missing = [f"{m.__name__}.{name}" for m in models for name in m.model_fields if f"`{name}`" not in reference]
    missing += [f"WTB_{name.upper()}" for name in WTBSettings.model_fields if f"`WTB_{name.upper()}`" not in reference]
    assert missing == []
