"""The code's own budgets, so that the house stays easy to change: modules of at most
400 lines, functions of at most 50 (data tables aside), and no block of six
lines or more spelled twice in mlq/ or controller/."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted([*ROOT.glob("mlq/*.py"), *ROOT.glob("controller/*.py")])
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 50
#: Functions that are tables of data (the OpenAPI document's routes), not logic.
DATA_TABLES = {("controller/openapi.py", "_paths"), ("controller/openapi.py", "_dashboard_paths")}
#: Shortest run of identical lines counted as a duplicate.
DUPLICATE_LINES = 6


def _name(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("path", SOURCES, ids=_name)
def test_no_module_is_over_400_lines(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{_name(path)} has {lines} lines"


def test_no_function_is_over_50_lines() -> None:
    long = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if length > MAX_FUNCTION_LINES and (_name(path), node.name) not in DATA_TABLES:
                    long.append(f"{_name(path)}:{node.lineno} {node.name} ({length} lines)")
    assert not long, long


def _code_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the lines that carry code: no blank lines, comments,
    imports, or lines of closing brackets alone."""
    kept = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        text = line.strip()
        if (not text or text.startswith(("#", "import ", "from ", '"""'))
                or re.fullmatch(r"[)\]}]+[,:]?", text)):
            continue
        kept.append((number, text))
    return kept


def test_no_six_lines_are_spelled_twice() -> None:
    seen: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for path in SOURCES:
        lines = _code_lines(path)
        for start in range(len(lines) - DUPLICATE_LINES + 1):
            window = tuple(text for _, text in lines[start:start + DUPLICATE_LINES])
            seen[window].append(f"{_name(path)}:{lines[start][0]}")
    twice = {places[0]: places[1:] for places in seen.values() if len(places) > 1}
    assert not twice, twice
