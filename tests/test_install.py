"""What a new user installs is enough: every module the tests and examples import is
declared, and .ci/run runs exactly the README's install and test commands."""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parent.parent
OWN = {"mlq", "controller", "tests", "benchmarks", "examples"}


def imported_top_modules(folder: Path) -> dict[str, Path]:
    """Each absolute top-level module imported by a .py file below `folder`, with one file that does."""
    found: dict[str, Path] = {}
    for path in sorted(folder.rglob("*.py")):
        local = {p.stem for p in path.parent.glob("*.py")} | {
            p.name for p in path.parent.iterdir() if p.is_dir()}
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in OWN and top not in local:
                    found.setdefault(top, path)
    return found


def declared_distributions() -> set[str]:
    """The distributions mlq's own metadata asks for, with its `test` extra."""
    declared = set()
    for line in metadata.requires("mlq") or []:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate({"extra": "test"}):
            declared.add(canonicalize_name(requirement.name))
    return declared


def test_every_module_the_tests_and_examples_import_is_declared() -> None:
    providers = metadata.packages_distributions()
    declared = declared_distributions()
    undeclared = {}
    for folder in ("tests", "examples"):
        for module, path in imported_top_modules(REPO / folder).items():
            dists = {canonicalize_name(d) for d in providers.get(module, [])}
            if not dists & declared:
                undeclared[module] = (str(path.relative_to(REPO)), sorted(dists))
    assert not undeclared, f"imported but not declared in setup.py: {undeclared}"


def readme_commands(heading: str) -> list[str]:
    """The command lines of the first bash block under a README heading."""
    readme = (REPO / "README.md").read_text()
    section = readme.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, f"no bash block under '## {heading}'"
    return [line.split("  #")[0].strip() for line in block.group(1).splitlines()
            if line.strip() and not line.startswith("#")]


def ci_lines() -> list[str]:
    return [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]


def test_ci_runs_the_readme_install_and_test_commands_in_a_new_venv() -> None:
    install = readme_commands("Install")
    tests = readme_commands("Tests")
    ci = ci_lines()
    # The README's own venv line names a folder the user keeps; CI makes a throwaway one.
    assert install[0] == "python3 -m venv .venv && . .venv/bin/activate", install
    assert 'python3 -m venv "$venv"' in ci and '. "$venv/bin/activate"' in ci
    assert any(line.startswith("venv=") and "mktemp -d" in line for line in ci)
    assert any(line.startswith("trap ") and "rm -rf" in line for line in ci)
    for command in install[1:] + tests:
        assert command in ci, f"README command {command!r} is not what .ci/run runs"
    activated = ci.index('. "$venv/bin/activate"')
    assert all(ci.index(command) > activated for command in install[1:] + tests)


def test_the_install_uses_the_constraints_file() -> None:
    requirements = (REPO / "requirements.txt").read_text().split()
    assert requirements[:2] == ["-c", "constraints.txt"], requirements
    pins = {canonicalize_name(Requirement(line).name): Requirement(line).specifier
            for line in (REPO / "constraints.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")}
    for tool in ("pytest", "schemathesis", "hypothesis", "openapi-spec-validator", "pytest-timeout"):
        assert any(spec.operator in ("<", "<=", "==") for spec in pins[tool]), tool
