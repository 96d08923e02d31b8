"""Comments and docstrings say why the code is so, not how fast it ran.

Benchmark figures, timings, machine names and references to issues or to
documents outside the repository go stale in code; they belong in the
benchmark docs (``benchmarks/``, ``docs/``), which this check leaves out.
"""

from __future__ import annotations

import ast
import io
import os
import re
import tokenize
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIPPED = {"benchmarks", "docs", ".venv", ".git", ".wtb", "node_modules", "site", "build", "dist"}

FORBIDDEN = re.compile(
    r"\b(?![45]\d\ds\b)\d+(\.\d+)?\s?(ms|s|µs|us|MB|GB)\b"  # a measured figure (not HTTP 429s)
    r"|\bissue\s?#?\d+"  # an issue of the tracker
    r"|\bmachine [A-H]\b"  # a benchmark machine
    r"|\b\d+-core machine\b"  # a machine's size standing in for a measurement
    r"|\bDESIGN\.md\b",  # the design document outside the repository
    re.IGNORECASE,
)


# Code and values quoted in a docstring ("512MB", ``memory=64MB``) are examples, not measurements.
QUOTED = re.compile(r"``[^`]*``|`[^`]*`|\"[^\"]*\"|(?<!\w)'[^']*'(?!\w)")


def _sources() -> Iterator[Path]:
    """The repository's Python files, skipped and hidden folders pruned before the walk enters them (the virtualenv)."""
    found = []
    for folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = [name for name in subfolders if name not in SKIPPED and not name.startswith(".")]
        found.extend(Path(folder, name) for name in files if name.endswith(".py"))
    yield from sorted(found)


def _may_comment(line: str) -> bool:
    """Whether a comment on ``line`` (it runs from one of its ``#`` to the end) could be an offence."""
    return any(FORBIDDEN.search(QUOTED.sub("", line[at:])) for at, char in enumerate(line) if char == "#")


def _comments(source: str) -> Iterator[tuple[int, str]]:
    if not any(_may_comment(line) for line in source.splitlines() if "#" in line):
        return  # no line could hold an offending comment: tokenizing finds none either
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            yield token.start[0], token.string


def _docstrings(source: str) -> Iterator[tuple[int, str]]:
    """Docstrings of modules, classes and functions, and the attribute docstrings after assignments."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if not isinstance(body, list):
            continue
        for statement in body:
            if (
                isinstance(statement, ast.Expr)
                and isinstance(statement.value, ast.Constant)
                and isinstance(statement.value.value, str)
            ):
                yield statement.lineno, statement.value.value


def _offences(path: Path) -> Iterator[str]:
    source = path.read_text(encoding="utf-8")
    for kind, found in (("comment", _comments(source)), ("docstring", _docstrings(source))):
        for line, text in found:
            for number, text_line in enumerate(text.splitlines()):
                match = FORBIDDEN.search(QUOTED.sub("", text_line))
                if match:
                    where = line + number if kind == "docstring" else line
                    yield f"{path.relative_to(ROOT)}:{where}: {kind} quotes {match.group(0)!r}"


def test_no_figure_machine_or_issue_in_comments_and_docstrings() -> None:
    offences = [offence for path in _sources() for offence in _offences(path)]
    assert not offences, "say why, not how fast (figures go to benchmarks/ or docs/):\n" + "\n".join(offences)


def test_the_check_finds_a_figure_in_a_comment(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text('"""Module."""\n\nx = 1  # took 150 ms on machine G\n', encoding="utf-8")
    assert [o.split(": ", 1)[1] for o in _offences_at(sample)] == ["comment quotes '150 ms'"]


def _offences_at(path: Path) -> list[str]:
    source = path.read_text(encoding="utf-8")
    found = []
    for kind, items in (("comment", _comments(source)), ("docstring", _docstrings(source))):
        for line, text in items:
            for number, text_line in enumerate(text.splitlines()):
                match = FORBIDDEN.search(QUOTED.sub("", text_line))
                if match:
                    found.append(f"{path}:{line + number}: {kind} quotes {match.group(0)!r}")
    return found
