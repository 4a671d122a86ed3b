"""The version of fhir-admsc; this module imports nothing, so reading it loads nothing else."""

__version__ = "0.1.0"
