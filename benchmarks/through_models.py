"""The export command's pipeline with fhir.resources models in it: the baseline of bench.py's
whole-command export figure.

    python benchmarks/through_models.py STUDY_DIR BUNDLE.json   # export
    python benchmarks/through_models.py --parse BUNDLE.json      # json.load + model_validate

Reads and maps the study folder as ``fhir-admsc export`` does, then validates each resource into
its fhir.resources model (R4 through the R4B models) and writes it with the model's own serialiser,
one Bundle entry a line: what a tool built on those models does for the same output. (Validating
the whole Bundle as one model instead takes about twice as long.)

With ``--parse``, the baseline of the whole-command validation figure: ``json.load`` of a Bundle
and ``model_validate`` of each of its resources, in one process.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from fhir_admsc.bundle import bundle
from fhir_admsc.fhir import model_class
from fhir_admsc.mappings import study_to_fhir
from fhir_admsc.tables import read_study


def parse(path: str) -> None:
    with open(path, encoding="utf-8") as file:
        payload = json.load(file)
    for entry in payload["entry"]:
        model_class(entry["resource"]["resourceType"]).model_validate(entry["resource"])


def main() -> None:
    if sys.argv[1] == "--parse":
        parse(sys.argv[2])
        return
    folder, output = sys.argv[1:3]
    study = read_study(folder)
    entries = []
    for entry in bundle(study_to_fhir(study), "transaction", study.info.study_id)["entry"]:
        resource = entry["resource"]
        model = model_class(resource["resourceType"]).model_validate(resource)
        entries.append(
            f'{{"fullUrl":"{entry["fullUrl"]}","resource":{model.model_dump_json()},'
            f'"request":{json.dumps(entry["request"])}}}'
        )
    head = '{"resourceType":"Bundle","type":"transaction","entry":[\n'
    Path(output).write_text(head + ",\n".join(entries) + "\n]}\n", encoding="utf-8")


if __name__ == "__main__":
    main()
