"""What an installed fhir-admsc needs is declared: every third-party module the package imports
comes from a distribution in pyproject.toml's dependencies (or, for an import guarded by
``except ImportError``, in an extra). A module that only the test extra brings would pass the
suite and break the README's first command."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions, version
from pathlib import Path

import pytest

import fhir_admsc

ROOT = Path(__file__).parent.parent
PACKAGE = ROOT / "fhir_admsc"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _name(requirement: str) -> str:
    """The normalised distribution name of a requirement string (PEP 503)."""
    bare = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert bare, requirement
    return re.sub(r"[-_.]+", "-", bare.group()).lower()


def _guarded(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Whether an import sits in a ``try`` that handles ImportError."""
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.Try):
            for handler in node.handlers:
                names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
                if any(
                    getattr(n, "id", "") in ("ImportError", "ModuleNotFoundError") for n in names
                ):
                    return True
    return False


def _imports() -> dict[str, tuple[str, bool]]:
    """Top-level module -> (first file importing it, every import of it guarded)."""
    found: dict[str, tuple[str, bool]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top in sys.stdlib_module_names or top in ("fhir_admsc", "__future__"):
                    continue
                where, guarded = found.get(top, (str(path.relative_to(ROOT)), True))
                found[top] = (where, guarded and _guarded(node, parents))
    return found


IMPORTS = _imports()
DISTRIBUTIONS = packages_distributions()
CORE = {_name(r) for r in PROJECT["dependencies"]}
EXTRAS = {_name(r) for rs in PROJECT["optional-dependencies"].values() for r in rs}


def test_the_scan_sees_the_package_imports() -> None:
    assert {"click", "requests", "pydantic", "fhirpathpy", "matplotlib"} <= IMPORTS.keys()
    assert IMPORTS["matplotlib"][1] and not IMPORTS["click"][1]


@pytest.mark.parametrize("module", sorted(IMPORTS))
def test_every_imported_module_is_declared(module: str) -> None:
    where, guarded = IMPORTS[module]
    provided = {_name(d) for d in DISTRIBUTIONS.get(module, [])}
    assert provided, f"{module} (imported in {where}) is installed by no distribution"
    declared = CORE | EXTRAS if guarded else CORE
    assert provided & declared, (
        f"{module} is imported in {where} but {', '.join(sorted(provided))} is not in "
        f"pyproject.toml's {'dependencies or extras' if guarded else 'dependencies'}"
    )


def _loaded_after(statement: str) -> set[str]:
    """The fhir_admsc modules a fresh interpreter holds after ``statement``."""
    code = f"import sys\n{statement}\nprint(' '.join(m for m in sys.modules if m.split('.')[0] == 'fhir_admsc'))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(done.stdout.split())


def test_importing_the_client_does_not_load_the_study_stack() -> None:
    loaded = _loaded_after("import fhir_admsc.client")
    assert "fhir_admsc.client" in loaded
    assert not loaded & {"fhir_admsc.tables", "fhir_admsc.mappings", "fhir_admsc.study"}
    assert _loaded_after("from fhir_admsc.__version__ import __version__") == {
        "fhir_admsc",
        "fhir_admsc.__version__",
    }


def test_every_public_name_is_there() -> None:
    assert fhir_admsc.__version__ == version("fhir-admsc")
    for name in fhir_admsc.__all__:
        assert getattr(fhir_admsc, name) is not None, name
    assert set(fhir_admsc.__all__) <= set(dir(fhir_admsc))
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        fhir_admsc.nothing  # noqa: B018
