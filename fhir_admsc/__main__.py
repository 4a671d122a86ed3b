"""``python -m fhir_admsc``: the same as the ``fhir-admsc`` command."""

from fhir_admsc.cli import main

main()
