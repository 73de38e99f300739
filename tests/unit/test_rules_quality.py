"""invalid-resource: one finding per resource that could not be read, naming it and why."""

from __future__ import annotations

from cds_service.rules import evaluate
from cds_service.rules.model import InvalidResource, Visit
from cds_service.rules.quality import invalid_resource


def test_one_finding_per_invalid_resource() -> None:
    bad = (
        InvalidResource("administrations", "MedicationAdministration", "ma-9", ("effectiveDateTime: bad",)),
        InvalidResource("context.draftOrders", "MedicationRequest", None, ("intent: Field required",)),
    )
    visit = Visit(hook_kind="encounter", patient_ref="Patient/p1", invalid=bad)
    assert [f.detail for f in invalid_resource(visit)] == [
        {"where": "administrations", "resource_type": "MedicationAdministration", "resource_id": "ma-9",
         "problems": ["effectiveDateTime: bad"]},
        {"where": "context.draftOrders", "resource_type": "MedicationRequest", "resource_id": None,
         "problems": ["intent: Field required"]},
    ]
    assert [(f.rule, f.subject) for f in evaluate(visit, {"invalid-resource": {}})] == [
        ("invalid-resource", None), ("invalid-resource", None)]


def test_nothing_invalid_nothing_said() -> None:
    assert list(invalid_resource(Visit(hook_kind="order-sign", patient_ref="Patient/p1"))) == []
