"""Validation reports: text for people, an OperationOutcome (json), SARIF 2.1.0 and JUnit XML for CI."""

from __future__ import annotations

import json
from collections import Counter
from xml.etree import ElementTree

from fhir_admsc.__version__ import __version__
from fhir_admsc.validation.issues import Issue

FORMATS = ["text", "json", "sarif", "junit"]
INFORMATION_URI = "https://fhir-admsc.org"
_SARIF_LEVEL = {"fatal": "error", "error": "error", "warning": "warning", "information": "note"}
_LINE = "http://hl7.org/fhir/StructureDefinition/operationoutcome-issue-line"
_SOURCE = "http://hl7.org/fhir/StructureDefinition/operationoutcome-issue-source"


def render(fmt: str, issues: list[Issue], checked: int) -> str:
    """The report of a run that checked ``checked`` resources and found ``issues``."""
    return {"text": text, "json": operation_outcome, "sarif": sarif, "junit": junit}[fmt](
        issues, checked
    )


def summary(issues: list[Issue], checked: int) -> str:
    counts = Counter(i.severity for i in issues)
    errors = counts["error"] + counts["fatal"]
    return (
        f"{checked} resource{'s' if checked != 1 else ''} checked: {errors} "
        f"error{'s' if errors != 1 else ''}, {counts['warning']} warning"
        f"{'s' if counts['warning'] != 1 else ''}, {counts['information']} information"
    )


def text(issues: list[Issue], checked: int) -> str:
    return "".join(f"{issue}\n" for issue in issues) + summary(issues, checked) + "\n"


def operation_outcome(issues: list[Issue], checked: int) -> str:
    entries = []
    for issue in issues:
        entry: dict = {"severity": issue.severity, "code": issue.code}
        extensions = []
        if issue.line:
            extensions.append({"url": _LINE, "valueInteger": issue.line})
        if issue.source:
            extensions.append({"url": _SOURCE, "valueString": issue.source})
        if extensions:
            entry = {"extension": extensions, **entry}
        if issue.rule:
            entry["details"] = {
                "coding": [{"system": f"{INFORMATION_URI}/rules", "code": issue.rule}],
                "text": issue.message,
            }
        else:
            entry["details"] = {"text": issue.message}
        entry["diagnostics"] = str(issue)
        entry["expression"] = [issue.location]
        entries.append(entry)
    if not entries:
        entries = [
            {
                "severity": "information",
                "code": "informational",
                "details": {"text": summary(issues, checked)},
            }
        ]
    outcome = {"resourceType": "OperationOutcome", "issue": entries}
    return json.dumps(outcome, indent=2, ensure_ascii=False) + "\n"


def sarif(issues: list[Issue], checked: int) -> str:
    rules = sorted({i.rule or i.code for i in issues})
    results = []
    for issue in issues:
        location: dict = {
            "logicalLocations": [{"fullyQualifiedName": issue.location, "kind": "element"}]
        }
        if issue.source:
            physical: dict = {"artifactLocation": {"uri": issue.source}}
            if issue.line:
                physical["region"] = {"startLine": issue.line}
            location = {"physicalLocation": physical, **location}
        results.append(
            {
                "ruleId": issue.rule or issue.code,
                "ruleIndex": rules.index(issue.rule or issue.code),
                "level": _SARIF_LEVEL[issue.severity],
                "message": {"text": f"{issue.location}: {issue.message}"},
                "locations": [location],
            }
        )
    log = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "fhir-admsc",
                        "version": __version__,
                        "informationUri": INFORMATION_URI,
                        "rules": [{"id": r, "shortDescription": {"text": r}} for r in rules],
                    }
                },
                "results": results,
                "properties": {"resourcesChecked": checked},
            }
        ],
    }
    return json.dumps(log, indent=2, ensure_ascii=False) + "\n"


def junit(issues: list[Issue], checked: int) -> str:
    """One test case per resource with issues (failed at error, passed with warnings only), and
    one for the rest that passed; ``tests`` counts the test cases, as JUnit readers expect."""
    by_resource: dict[str, list[Issue]] = {}
    for issue in issues:
        by_resource.setdefault(issue.resource or issue.source or "input", []).append(issue)
    failing = {
        r: found
        for r, found in by_resource.items()
        if any(i.severity in ("error", "fatal") for i in found)
    }
    suite = ElementTree.Element(
        "testsuite",
        name="fhir-admsc validate",
        tests="0",
        failures=str(len(failing)),
        errors="0",
        skipped="0",
    )
    for name, found in by_resource.items():
        case = ElementTree.SubElement(suite, "testcase", classname="fhir-admsc.validate", name=name)
        body = "\n".join(str(i) for i in found)
        if name in failing:
            first = next(i for i in found if i.severity in ("error", "fatal"))
            failure = ElementTree.SubElement(
                case, "failure", message=first.message, type=first.code
            )
            failure.text = body
        else:
            ElementTree.SubElement(case, "system-out").text = body
    clean = checked - len(by_resource)
    if clean > 0:
        ElementTree.SubElement(
            suite,
            "testcase",
            classname="fhir-admsc.validate",
            name=f"{clean} resources without issues",
        )
    suite.set("tests", str(len(suite.findall("testcase"))))
    ElementTree.indent(suite)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        + ElementTree.tostring(suite, encoding="unicode")
        + "\n"
    )
