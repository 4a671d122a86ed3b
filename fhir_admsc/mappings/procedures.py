"""Procedures and the cell product: a Procedure per harvest or injection, a lipoaspirate Specimen per
harvest, and one BiologicallyDerivedProduct per product lot.

R4's BiologicallyDerivedProduct.quantity counts units, not cells, so the cell dose travels on the
injection Procedure (``cell-dose`` extension) and viability on the product (``cell-viability``).
R4's Procedure.usedReference cannot point at a BiologicallyDerivedProduct either, so the injection
names its lot with the ``cell-product`` extension.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fhir_admsc import terminology as term
from fhir_admsc.mappings.context import (
    FhirIndex,
    StudyContext,
    add_extensions,
    concept,
    date_part,
    extension,
    extension_value,
    iso,
    key_for,
    own_code,
    quantity,
)
from fhir_admsc.study import Procedure, Study


def to_fhir(study: Study, ctx: StudyContext) -> Iterator[dict[str, Any]]:
    """Every Procedure (with a Specimen after each harvest), then one product per lot."""
    lots: dict[str, Procedure] = {}
    first_injections = {
        p.participant_id: p.procedure_id for p in study.procedures if p.injection_number == 1
    }
    for p in study.procedures:
        repeats = first_injections.get(p.participant_id) if p.injection_number == 2 else None
        yield procedure(p, ctx, repeats)
        if p.type == "harvest":
            yield specimen(p, ctx)
        elif p.product_lot is not None:
            lots.setdefault(p.product_lot, p)
    for injection in lots.values():
        yield product(injection, ctx)


def procedure(p: Procedure, ctx: StudyContext, repeats: str | None = None) -> dict[str, Any]:
    """The Procedure of a harvest or injection; ``repeats`` names the first injection that a
    repeat injection repeats (derived, so that the 5-month rule can be checked on the resource)."""
    r = ctx.resource("Procedure", p.procedure_id, p.type)
    add_extensions(
        r,
        extension("injection-number", p.injection_number),
        extension("repeat-of", repeats and ctx.ref("Procedure", repeats)),
        extension("cell-dose", p.cell_dose),
        extension("procedure-volume", p.volume_ml),
        extension("imaging-guidance", p.guidance and concept(term.GUIDANCE[p.guidance])),
        extension(
            "cell-product", p.product_lot and ctx.ref("BiologicallyDerivedProduct", p.product_lot)
        ),
    )
    r["status"] = "completed"
    r["code"] = concept(term.PROCEDURES[p.type])
    r["subject"] = ctx.ref("Patient", p.participant_id)
    r["performedDateTime"] = iso(p.performed_on)
    if p.disc_level is not None:
        r["bodySite"] = [concept(term.DISC_LEVELS[p.disc_level])]
    if p.notes is not None:
        r["note"] = [{"text": p.notes}]
    return r


def specimen(harvest: Procedure, ctx: StudyContext) -> dict[str, Any]:
    r = ctx.resource("Specimen", harvest.procedure_id, "lipoaspirate")
    r["status"] = "available"
    r["type"] = concept(term.LIPOASPIRATE)
    r["subject"] = ctx.ref("Patient", harvest.participant_id)
    collection: dict[str, Any] = {"collectedDateTime": iso(harvest.performed_on)}
    if harvest.volume_ml is not None:
        collection["quantity"] = quantity(harvest.volume_ml, term.MILLILITRES)
    r["collection"] = collection
    return r


def product(injection: Procedure, ctx: StudyContext) -> dict[str, Any]:
    """The product lot first injected in ``injection`` (every injection of a lot agrees on it)."""
    lot = injection.product_lot or ""
    r = ctx.resource("BiologicallyDerivedProduct", lot, "cell-product")
    add_extensions(
        r,
        extension(
            "harvest-procedure",
            injection.harvest_procedure_id and ctx.ref("Procedure", injection.harvest_procedure_id),
        ),
        extension("cell-viability", injection.viability_pct),
    )
    r["productCategory"] = "cells"
    r["productCode"] = concept(term.ADMSC_PRODUCT)
    r["status"] = "available"
    r["collection"] = {"source": ctx.ref("Patient", injection.participant_id)}
    return r


def from_fhir(index: FhirIndex) -> dict[str, Any]:
    """procedures.csv rows read back from Procedures and their products."""
    return {"procedures": [index.convert(r, _procedure) for r in index.of_type("Procedure")]}


def _procedure(r: dict[str, Any], index: FhirIndex) -> Procedure:
    product_ref = extension_value(r, "cell-product")
    lot_product = None if product_ref is None else index.resolve(product_ref, "Procedure.extension")
    harvest_ref = None if lot_product is None else extension_value(lot_product, "harvest-procedure")
    guidance = extension_value(r, "imaging-guidance")
    return Procedure(
        participant_id=index.ref_key(r["subject"], "Procedure.subject"),
        procedure_id=index.key(r),
        type=key_for(term.PROCEDURES, own_code(r["code"])),
        performed_on=date_part(r["performedDateTime"]),
        disc_level=key_for(term.DISC_LEVELS, own_code(r["bodySite"][0]))
        if r.get("bodySite")
        else None,
        injection_number=extension_value(r, "injection-number"),
        cell_dose=extension_value(r, "cell-dose"),
        volume_ml=extension_value(r, "procedure-volume"),
        product_lot=None if lot_product is None else index.key(lot_product),
        viability_pct=None
        if lot_product is None
        else extension_value(lot_product, "cell-viability"),
        harvest_procedure_id=None
        if harvest_ref is None
        else index.ref_key(harvest_ref, "BiologicallyDerivedProduct.extension"),
        guidance=None if guidance is None else key_for(term.GUIDANCE, own_code(guidance)),
        notes=r["note"][0]["text"] if r.get("note") else None,
    )
