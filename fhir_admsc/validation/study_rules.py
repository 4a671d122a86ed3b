"""The study's rules across resources, which the validation runner is given: each notes what it
needs of the resources it is shown first, then judges each checked resource."""

from __future__ import annotations

from typing import Any

from fhir_admsc import terminology as term
from fhir_admsc.resources import label
from fhir_admsc.validation.issues import Issue

STUDY_RULES = "fhir-admsc:study"


class AdverseEventAfterFirstProcedure:
    """No adverse event starts before the participant's first study procedure (when that
    participant's procedures are among the checked resources)."""

    kept_types = frozenset({"Procedure"})

    def __init__(self) -> None:
        self.first: dict[str, str] = {}  # subject reference -> first procedure date

    def see(self, resource: Any) -> None:
        """Note the date of a procedure of the participant."""
        if isinstance(resource, dict) and resource.get("resourceType") == "Procedure":
            subject = _subject(resource)
            performed = resource.get("performedDateTime")
            if isinstance(subject, str) and isinstance(performed, str):
                self.first[subject] = min(self.first.get(subject, performed), performed)

    def check(self, resource: Any) -> Issue | None:
        """The issue of an adverse event that starts before the first procedure, else None."""
        r = resource
        if not (
            isinstance(r, dict)
            and r.get("resourceType") == "AdverseEvent"
            and term.profile_url("adverse-event") in _claimed(r)
        ):
            return None
        subject = _subject(r)
        onset = r.get("date")
        start = self.first.get(subject) if isinstance(subject, str) else None
        if not (isinstance(onset, str) and start is not None and onset[:10] < start[:10]):
            return None
        return Issue(
            "error",
            "invariant",
            f"the adverse event starts ({onset[:10]}) before "
            f"the participant's first study procedure ({start[:10]})",
            "AdverseEvent.date",
            f"{STUDY_RULES}#ae-after-first-procedure",
            label(r),
        )


def _subject(resource: dict[str, Any]) -> Any:
    """The subject reference, or None when the element is malformed (the walk reports that)."""
    subject = resource.get("subject")
    return subject.get("reference") if isinstance(subject, dict) else None


def _claimed(resource: dict[str, Any]) -> list[Any]:
    meta = resource.get("meta")
    profiles = meta.get("profile") if isinstance(meta, dict) else None
    return profiles if isinstance(profiles, list) else []


# The rules the validator applies unless told otherwise, each made anew for every run.
RULES = [AdverseEventAfterFirstProcedure]
