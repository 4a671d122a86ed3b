"""FHIR packages as `--ig` names them: a package .tgz, a folder, or ``name#version`` from the local
FHIR package cache (``~/.fhir/packages``, where the HL7 validator and SUSHI keep them; the
``FHIR_PACKAGE_CACHE`` environment variable names another). A package's ``dependencies`` come from
the other packages given or the cache; one that is missing is named once, as a note.

A package is data, never code: a .tgz is read member by member in memory (nothing is extracted,
so no path inside it can point outside, and links are skipped), each member within the input
limits, each JSON document within the size and nesting limits.
"""

from __future__ import annotations

import json
import os
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fhir_admsc.errors import ConfigurationError, InvalidDataError, file_access
from fhir_admsc.limits import FILE_MB, MB, loads

KINDS = {"StructureDefinition", "ValueSet", "CodeSystem", "ImplementationGuide"}
# the R4 base: what r4.py already holds
BASE_PACKAGES = {"hl7.fhir.r4.core"}
_NAME_VERSION = re.compile(r"^([a-z0-9][a-z0-9._-]*)#([0-9A-Za-z.+-]+)$")
# the members of a package that hold no conformance resources
_SKIPPED = ("package.json", ".index.json")
MAX_MEMBERS = 100_000


def cache_folder() -> Path:
    """The local FHIR package cache."""
    configured = os.environ.get("FHIR_PACKAGE_CACHE", "").strip()
    return Path(configured) if configured else Path.home() / ".fhir" / "packages"


@dataclass
class Package:
    """One loaded package: its name and version (when it says), what it depends on, and its
    conformance resources."""

    name: str | None
    version: str | None
    dependencies: dict[str, str]
    resources: list[dict[str, Any]]
    source: str


@dataclass
class Loaded:
    """Every package loaded for a run, and what could not be found."""

    resources: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def load_packages(specs: list[str | Path]) -> Loaded:
    """The conformance resources of every package given and of the dependencies they name."""
    given = [load_package(spec) for spec in specs]
    loaded = Loaded()
    names = {p.name for p in given if p.name}
    queue = list(given)
    seen: set[str] = set()
    while queue:
        package = queue.pop(0)
        loaded.resources.extend(package.resources)
        for name, version in sorted(package.dependencies.items()):
            key = f"{name}#{version}"
            if name in BASE_PACKAGES or name in names or key in seen:
                continue
            seen.add(key)
            folder = cache_folder() / key / "package"
            if folder.is_dir():
                dependency = _folder_package(folder, key)
                names.add(name)
                queue.append(dependency)
            else:
                loaded.notes.append(
                    f"package {package.name or package.source} needs {key}, which is neither "
                    f"given with `igs` nor in the FHIR package cache ({cache_folder()}): what "
                    "its profiles take from it is not checked"
                )
    return loaded


def load_package(spec: str | Path) -> Package:
    """One package: a .tgz, a folder, or ``name#version`` in the cache."""
    path = Path(spec)
    if path.is_dir():
        inner = path / "package" if (path / "package" / "package.json").is_file() else path
        return _folder_package(inner, str(path))
    if path.is_file():
        return _tgz_package(path)
    match = _NAME_VERSION.match(str(spec))
    if match:
        folder = cache_folder() / str(spec) / "package"
        if folder.is_dir():
            return _folder_package(folder, str(spec))
        raise ConfigurationError(
            f"`igs` {spec}: not in the FHIR package cache ({cache_folder()}); give the "
            "package's .tgz or folder instead"
        )
    raise ConfigurationError(
        f"`igs` '{spec}' does not exist (give a package .tgz, a folder, or a name#version of the "
        "FHIR package cache)"
    )


def _folder_package(folder: Path, source: str) -> Package:
    resources: list[dict[str, Any]] = []
    manifest: dict[str, Any] = {}
    for file in sorted(folder.rglob("*.json")):
        if file.is_symlink() or not file.is_file():
            continue  # a package is its own files, not what links point at
        with file_access(file, "read"):
            if file.stat().st_size > FILE_MB.value() * MB:
                raise ConfigurationError(f"{file}: {FILE_MB.exceeded('is larger than')}")
            data = file.read_bytes()
        if file.name == "package.json" and file.parent == folder:
            manifest = _manifest(data, str(file))
        elif not file.name.endswith(_SKIPPED):
            resources.extend(_conformance_json(data, str(file)))
    return _package(manifest, resources, source)


def _tgz_package(path: Path) -> Package:
    resources: list[dict[str, Any]] = []
    manifest: dict[str, Any] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for count, member in enumerate(tar, start=1):
                if count > MAX_MEMBERS:
                    raise ConfigurationError(f"`igs` {path}: more than {MAX_MEMBERS} files")
                if not member.isfile() or not member.name.endswith(".json"):
                    continue  # folders, links and devices are not conformance resources
                where = f"{path}:{member.name}"
                if member.size > FILE_MB.value() * MB:
                    raise ConfigurationError(f"{where}: {FILE_MB.exceeded('is larger than')}")
                data = tar.extractfile(member)
                content = data.read() if data is not None else b""
                if member.name.lstrip("./") == "package/package.json":
                    manifest = _manifest(content, where)
                elif not member.name.endswith(_SKIPPED):
                    resources.extend(_conformance_json(content, where))
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ConfigurationError(f"`igs` {path}: not a FHIR package (.tgz): {e}") from None
    return _package(manifest, resources, str(path))


def _package(manifest: dict[str, Any], resources: list[dict[str, Any]], source: str) -> Package:
    dependencies = manifest.get("dependencies")
    return Package(
        manifest.get("name") if isinstance(manifest.get("name"), str) else None,
        manifest.get("version") if isinstance(manifest.get("version"), str) else None,
        {
            k: v
            for k, v in (dependencies.items() if isinstance(dependencies, dict) else [])
            if isinstance(k, str) and isinstance(v, str)
        },
        resources,
        source,
    )


def _json(data: bytes, where: str) -> Any:
    try:
        return loads(data, where)
    except InvalidDataError as e:
        raise ConfigurationError(f"{where}: {e.problems[0].message}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigurationError(f"{where}: not valid JSON: {e}") from None


def _manifest(data: bytes, where: str) -> dict[str, Any]:
    value = _json(data, where)
    return value if isinstance(value, dict) else {}


def _conformance_json(data: bytes, where: str) -> list[dict[str, Any]]:
    resource = _json(data, where)
    if isinstance(resource, dict) and resource.get("resourceType") in KINDS:
        return [resource]
    if isinstance(resource, dict) and resource.get("resourceType") == "Bundle":
        return [
            e["resource"]
            for e in resource.get("entry", [])
            if isinstance(e, dict)
            and isinstance(e.get("resource"), dict)
            and e["resource"].get("resourceType") in KINDS
        ]
    return []
