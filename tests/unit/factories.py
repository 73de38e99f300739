"""Shared builders for rule unit tests: tiny fact objects, no FHIR JSON."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from msgspec.structs import replace

from cds_service.rules.model import (
    Drug,
    DrugClass,
    Frequency,
    Injection,
    PayerProfile,
    Quantity,
    RouteClass,
    Setting,
    Visit,
)

UG_1000 = Quantity(Decimal(1000), "ug")

B12 = Drug(
    key="cyanocobalamin",
    display="Cyanocobalamin (vitamin B12)",
    hcpcs="J3420",
    billing_unit=UG_1000,
    allowed_routes=frozenset({RouteClass.IM, RouteClass.SC}),
    max_dose=Decimal(1000),
)
HYDROXOCOBALAMIN = Drug(
    key="hydroxocobalamin",
    display="Hydroxocobalamin",
    hcpcs="J3490",
    billing_unit=UG_1000,
    allowed_routes=frozenset({RouteClass.IM}),
    max_dose=Decimal(1000),
)
METHYLCOBALAMIN = Drug(
    key="methylcobalamin",
    display="Methylcobalamin (compounded)",
    hcpcs="J3490",
    billing_unit=UG_1000,
    allowed_routes=frozenset({RouteClass.IM, RouteClass.SC}),
    drug_class=DrugClass.COMPOUNDED,
)

DOS = dt.date(2025, 3, 4)
AT = dt.datetime(2025, 3, 4, 10, 30)
ADMIN_REF = "MedicationAdministration/ma-1"
ORDER_REF = "MedicationRequest/mr-1"
B12_FREQUENCY = Frequency(min_interval_days=28, loading_max_doses=12, loading_window_days=42)


def make_injection(**overrides: Any) -> Injection:
    """A completed, fully documented IM cyanocobalamin administration on DOS: no rule should complain."""
    fields: dict[str, Any] = {
        "ref": ADMIN_REF,
        "kind": "administration",
        "status": "completed",
        "drug": B12,
        "drug_coded": True,
        "drug_text": "Cyanocobalamin 1000 mcg/mL",
        "route": RouteClass.IM,
        "route_coded": True,
        "dose": Decimal(1000),
        "dose_documented": True,
        "at": AT,
        "timed": True,
        "date_of_service": DOS,
        "performer": True,
        "diagnoses": ("D51.0",),
    }
    fields.update(overrides)
    return Injection(**fields)


def make_order(**overrides: Any) -> Injection:
    """A draft order being signed: no time, no performer, no date of its own."""
    fields: dict[str, Any] = {
        "ref": ORDER_REF,
        "kind": "order",
        "status": "draft",
        "at": None,
        "timed": False,
        "performer": False,
        "date_of_service": None,
    }
    fields.update(overrides)
    return make_injection(**fields)


def make_visit(*injections: Injection, **overrides: Any) -> Visit:
    fields: dict[str, Any] = {
        "hook_kind": "encounter",
        "patient_ref": "Patient/p1",
        "encounter_ref": "Encounter/e1",
        "setting": Setting.NON_FACILITY,
        "date_of_service": DOS,
        "injections": injections,
    }
    fields.update(overrides)
    return Visit(**fields)


def make_payer(**overrides: Any) -> PayerProfile:
    fields: dict[str, Any] = {"key": "commercial", "display": "Commercial (test)"}
    fields.update(overrides)
    return PayerProfile(**fields)


def make_drug(base: Drug = B12, **overrides: Any) -> Drug:
    return replace(base, **overrides)
