"""eSource: a consented participant's routine records pulled from the hospital's FHIR API into a
draft of the study tables (link, hospital, draft), and the draft compared with what the site typed
(diff)."""
