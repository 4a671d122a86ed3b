"""Offline validation of FHIR R4 resources against the project's profiles and the R4 base."""
