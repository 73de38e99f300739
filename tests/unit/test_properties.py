"""Properties over generated facts: units grow with the dose, no visit makes a rule raise, every card is well formed."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from decimal import Decimal
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds_service import config as configuration
from cds_service.cards import (
    CODE_SYSTEMS,
    MODIFIER_URL,
    CardRenderer,
    escape_markdown,
    json_copy,
    load_templates,
    name_uuid,
)
from cds_service.fhir.parse import ref_key
from cds_service.rules import RULES, evaluate
from cds_service.rules.model import (
    MAX_UNITS,
    ChargeLine,
    Drug,
    DrugClass,
    Frequency,
    Injection,
    InvalidResource,
    PayerProfile,
    Quantity,
    RouteClass,
    Setting,
    Visit,
    code_system,
)
from cds_service.runtime import terms_of
from tests.cardshape import check_shape
from tests.conftest import DEFAULT_CONFIG

SETTINGS = configuration.load(DEFAULT_CONFIG)
# The configured drugs as billed on the generated dates (2025 Q1): code, unit and limit from CMS's files.
CATALOG = {key: drug for key in SETTINGS.catalog.drugs
           if (drug := terms_of(SETTINGS).formulary.drug_for(key, dt.date(2025, 3, 4))) is not None}
POLICY = SETTINGS.policy
RAW_CONFIG = yaml.safe_load(DEFAULT_CONFIG.read_text())
INDICATORS = {rule_id: spec["indicator"] for rule_id, spec in RAW_CONFIG["rules"].items()}
TEMPLATES = load_templates()
ALL_RULES = frozenset(RULES)

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- units never decrease as the dose grows ----------------------------------------------------------------

def unit_drug(value: str, unit: str) -> Drug:
    return Drug(key=f"drug-{unit}", display="Test drug", hcpcs="J9999", billing_unit=Quantity(Decimal(value), unit),
                allowed_routes=frozenset({RouteClass.IM}))


UNIT_DRUGS = [unit_drug("1000", "ug"), unit_drug("15", "mg"), unit_drug("0.5", "mL")]
DOSES = st.decimals(min_value=Decimal("0.001"), max_value=Decimal("1000000"), places=3)


@settings(max_examples=300, deadline=None)
@given(drug=st.sampled_from(UNIT_DRUGS), a=DOSES, b=DOSES)
def test_units_never_decrease_as_the_dose_grows(drug: Drug, a: Decimal, b: Decimal) -> None:
    a, b = min(a, b), max(a, b)
    low = Injection(ref="MedicationAdministration/a", kind="administration", status="completed", drug=drug, dose=a)
    high = Injection(ref="MedicationAdministration/b", kind="administration", status="completed", drug=drug, dose=b)
    if b / drug.billing_unit.value > MAX_UNITS:  # more than any claim line carries: no drug line
        assert high.drug_units is None and high.implausible_dose
        return
    assert low.drug_units is not None and high.drug_units is not None
    assert 1 <= low.drug_units <= high.drug_units
    assert high.drug_units * drug.billing_unit.value >= b  # "up to" codes: the units cover the whole dose


def test_units_at_the_unit_boundaries() -> None:
    b12 = CATALOG["cyanocobalamin"]

    def units(dose: str) -> int | None:
        return Injection(ref="r", kind="administration", status="completed", drug=b12, dose=Decimal(dose)).drug_units

    assert [units("1"), units("1000"), units("1000.001"), units("2000"), units("2001")] == [1, 1, 2, 2, 3]
    assert units("0") is None


# --- generated visits ------------------------------------------------------------------------------------

ODD_VACCINE = Drug(key="rabies-vaccine", display="Rabies vaccine", hcpcs="90675",
                   billing_unit=Quantity(Decimal(1), "mL"), allowed_routes=frozenset({RouteClass.IM}),
                   drug_class=DrugClass.VACCINE, vaccine_kind="rabies")
B12 = CATALOG["cyanocobalamin"]
# Weighted towards what rules look at: B12, completed admins, dates inside one quarter.
DRUGS = st.one_of(st.just(B12), st.sampled_from([None, *CATALOG.values(), ODD_VACCINE]))
STATUSES = st.one_of(
    st.sampled_from(["completed", "completed", "active", "draft"]),
    st.sampled_from(["in-progress", "not-done", "on-hold", "stopped", "unknown", "entered-in-error", "cancelled",
                     "", "COMPLETED"]),
    st.text(max_size=6),
)
DATES = st.one_of(st.none(), st.just(dt.date(2025, 3, 4)),
                  st.dates(min_value=dt.date(2025, 1, 1), max_value=dt.date(2025, 3, 31)))
ZONES = st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=-5)), dt.timezone(dt.timedelta(hours=14)),
                         dt.timezone(dt.timedelta(hours=-12))])
MOMENTS = st.none() | st.datetimes(min_value=dt.datetime(2025, 1, 1), max_value=dt.datetime(2025, 3, 31),
                                   timezones=ZONES)
ODD_DOSES = st.one_of(
    st.sampled_from([None, Decimal(0), Decimal("1E+30"), Decimal("-5")]),
    st.sampled_from([Decimal(1), Decimal("0.5"), Decimal(1000), Decimal(2000), Decimal(60), Decimal(150)]),
    st.decimals(min_value=Decimal("0.001"), max_value=Decimal("100000"), places=3),
)
DIAGNOSES = st.lists(st.sampled_from(["D51.0", "D510", "E53.8", "I10", "Z00.00", "", " d52.1 ", "K90"]),
                     max_size=3).map(tuple)
REFS = [f"MedicationAdministration/ma-{i}" for i in range(4)] + ["MedicationRequest/mr-0", "MedicationRequest/mr-1"]
CHARGE_CODES = ["96372", "96374", "96401", "90471", "G0008", "J3420", "J3490", "J1885", "90686", "99213", "99211",
                "99999", "A1234"]
MODIFIERS = st.lists(st.sampled_from(["25", "59", "XU", "JZ", "JW", "RT"]), max_size=2, unique=True).map(tuple)


@st.composite
def injections(draw: st.DrawFn, ref: str) -> Injection:
    drug = draw(DRUGS)
    return Injection(
        ref=ref,
        kind="order" if ref.startswith("MedicationRequest/") else "administration",
        status=draw(st.one_of(st.just("active" if ref.startswith("MedicationRequest/") else "completed"), STATUSES)),
        drug=drug,
        drug_coded=draw(st.booleans()),
        drug_text=draw(st.none() | st.sampled_from(["B12 shot", "<b>x</b> *y*", "Unknown drug"])),
        ndc=draw(st.none() | st.just("69680-0121-30")),
        container=draw(st.sampled_from([None, "single-dose", "multi-dose"])),
        route=draw(st.one_of(st.sampled_from([RouteClass.IM, RouteClass.SC]), st.sampled_from(list(RouteClass)))),
        route_coded=draw(st.booleans()),
        dose=draw(ODD_DOSES),
        dose_documented=draw(st.booleans()),
        at=draw(MOMENTS),
        timed=draw(st.booleans()),
        date_of_service=draw(DATES),
        performer=draw(st.booleans()),
        patient_supplied=draw(st.booleans()),
        diagnoses=draw(DIAGNOSES),
    )


def charge_lines(units: st.SearchStrategy[Decimal]) -> st.SearchStrategy[ChargeLine]:
    return st.builds(
        lambda code, **kw: ChargeLine(code=code, system=code_system(code), **kw),
        code=st.sampled_from(CHARGE_CODES),
        units=units,
        modifiers=MODIFIERS,
        date_of_service=DATES,
        id=st.none() | st.sampled_from(["ci-1", "ci-2", "ci-3", "ci-4"]),
        service=st.lists(st.sampled_from(REFS), max_size=2, unique=True).map(tuple),
    )


@st.composite
def charges_for(draw: st.DrawFn, given: tuple[Injection, ...], units: st.SearchStrategy[Decimal]) -> list[ChargeLine]:
    """Charges captured for the visit's own injections, as an EHR would have them: same date, maybe linked."""
    out = []
    for n, inj in enumerate(given):
        codes = ["96372", "99213", "99211", "96374", inj.drug.hcpcs if inj.drug else "J3420"]
        for code in draw(st.lists(st.sampled_from(codes), max_size=2, unique=True)):
            out.append(ChargeLine(
                code=code, system=code_system(code), units=draw(units), modifiers=draw(MODIFIERS),
                date_of_service=inj.date_of_service, id=draw(st.none() | st.just(f"ci-{n}-{code}")),
                service=draw(st.sampled_from([(), (inj.ref,)])),
            ))
    return out


FREQUENCIES = st.builds(Frequency, min_interval_days=st.integers(0, 60), loading_max_doses=st.integers(0, 12),
                        loading_window_days=st.integers(0, 60))
DRUG_KEYS = st.sampled_from(sorted(CATALOG))
CONFIGURED_PAYERS = [m.profile for m in SETTINGS.payers.matches]
PAYERS = st.none() | st.sampled_from(CONFIGURED_PAYERS) | st.builds(
    PayerProfile,
    key=st.just("test-payer"),
    display=st.sampled_from(["Medicare Part B", "Acme *Health* <Plan>"]),
    waste_modifiers=st.booleans(),
    medicare_vaccine_codes=st.booleans(),
    multiple_injection_modifier=st.sampled_from([None, "59", "XU"]),
    self_administered=st.frozensets(DRUG_KEYS, max_size=2),
    covered_diagnoses=st.dictionaries(DRUG_KEYS, st.lists(st.sampled_from(["D51", "E538", "K90"]), max_size=2)
                                      .map(tuple), max_size=3),
    frequency=st.one_of(st.just({"cyanocobalamin": Frequency(28)}),
                        st.dictionaries(DRUG_KEYS, FREQUENCIES, max_size=3)),
)
INVALID = st.builds(
    InvalidResource,
    where=st.sampled_from(["administrations", "context.draftOrders", "charges"]),
    resource_type=st.sampled_from(["MedicationAdministration", "(unknown)", "ChargeItem"]),
    resource_id=st.none() | st.sampled_from(["bad-1", "x_y*z"]),
    problems=st.lists(st.sampled_from(["status: Field required", "effectiveDateTime: timezone missing"]),
                      min_size=1, max_size=2).map(tuple),
)


@st.composite
def visits(draw: st.DrawFn, units: st.SearchStrategy[Decimal]) -> Visit:
    hook_kind = draw(st.sampled_from(["order-sign", "encounter"]))
    # Repeats allowed: two resources may share an id. Order refs make orders, others administrations.
    refs = draw(st.lists(st.sampled_from(REFS), max_size=4))
    if draw(st.booleans()):  # mostly one kind per hook, as facts build them
        refs = [r for r in refs if r.startswith("MedicationRequest/") == (hook_kind == "order-sign")]
    history_refs = draw(st.lists(st.sampled_from([*REFS[:2], "MedicationAdministration/old-1",
                                                  "MedicationAdministration/old-2"]), max_size=3))
    injections_ = tuple(draw(injections(ref)) for ref in refs)
    return Visit(
        hook_kind=hook_kind,
        patient_ref="Patient/p1",
        encounter_ref=draw(st.sampled_from([None, "Encounter/e1"])),
        setting=draw(st.sampled_from(list(Setting))),
        date_of_service=draw(DATES),
        injections=injections_,
        history=tuple(draw(injections(ref)) for ref in history_refs),
        charges=tuple(draw(st.lists(charge_lines(units), max_size=3))) + tuple(draw(charges_for(injections_, units))),
        invalid=tuple(draw(st.lists(INVALID, max_size=2))),
        payer=draw(PAYERS),
        policy=POLICY,
    )


ANY_UNITS = st.sampled_from([Decimal(0), Decimal(-1), Decimal("0.5"), Decimal(1), Decimal(2), Decimal(10)])
POSITIVE_UNITS = st.sampled_from([Decimal("0.5"), Decimal(1), Decimal(2), Decimal(3), Decimal(10)])


@PROPERTY
@given(visit=visits(ANY_UNITS))
def test_no_visit_makes_a_rule_raise(visit: Visit) -> None:
    findings = list(evaluate(visit, ALL_RULES))
    assert all(f.rule in RULES for f in findings)


# --- every card passes the CDS Hooks card rules ----------------------------------------------------------

def captured_json(line: ChargeLine, visit: Visit) -> dict[str, Any]:
    """The ChargeItem a captured line was read from."""
    resource: dict[str, Any] = {"resourceType": "ChargeItem", "id": line.id, "status": "billable"}
    if line.modifiers:
        resource["extension"] = [{"url": MODIFIER_URL, "valueCoding": {"code": m}} for m in line.modifiers]
    resource["code"] = {"coding": [{"system": CODE_SYSTEMS[line.system], "code": line.code}]}
    resource["subject"] = {"reference": visit.patient_ref}
    if visit.encounter_ref:
        resource["context"] = {"reference": visit.encounter_ref}
    if line.date_of_service:
        resource["occurrenceDateTime"] = line.date_of_service.isoformat()
    resource["quantity"] = {"value": float(line.units)}
    if line.service:
        resource["service"] = [{"reference": ref} for ref in line.service]
    return resource


@settings(PROPERTY, max_examples=250)
@given(visit=visits(POSITIVE_UNITS))
def test_every_card_passes_the_card_rules(visit: Visit) -> None:
    captured = {line.id: captured_json(line, visit) for line in visit.charges if line.id}
    findings = list(evaluate(visit, ALL_RULES))
    renderer = CardRenderer(TEMPLATES, INDICATORS)
    cards = renderer.render(findings, visit, "hook-instance-1", captured)
    assert len(cards) == len(findings)
    errors = check_shape({"cards": cards}, visit.hook_kind, captured,
                         require_context=visit.encounter_ref is not None, require_occurrence=False)
    assert errors == []
    for finding, card in zip(findings, cards, strict=True):
        assert card["source"]["topic"]["code"] == finding.rule
        actions = [a for s in card.get("suggestions", []) for a in s["actions"]]
        assert [a["type"] for a in actions] == (
            ["create"] * len(finding.creates) + ["update"] * len(finding.updates) + ["delete"] * len(finding.deletes)
        )
        for line, action in zip([*finding.creates, *finding.updates], actions, strict=False):
            resource = action["resource"]
            assert resource["code"]["coding"][0]["code"] == line.code
            if line.date_of_service is not None:
                assert any(key.startswith("occurrence") for key in resource), action
            rests_on_an_injection = RULES[finding.rule].scope == "injection" or finding.rule == "multiple-injections"
            if action["type"] == "create" or rests_on_an_injection:
                assert resource.get("service"), action  # what the charge rests on (CONTRACT section 5)
    assert len({card["uuid"] for card in cards}) == len(cards)


@PROPERTY
@given(visit=visits(POSITIVE_UNITS), max_cards=st.integers(0, 4))
def test_max_cards_keeps_the_most_severe(visit: Visit, max_cards: int) -> None:
    findings = list(evaluate(visit, ALL_RULES))
    renderer = CardRenderer(TEMPLATES, INDICATORS)
    every = renderer.render(findings, visit, "hook-instance-1")
    kept = renderer.render(findings, visit, "hook-instance-1", max_cards=max_cards)
    assert len(kept) == min(max_cards, len(every))
    order = {"critical": 0, "warning": 1, "info": 2}
    dropped = [c for c in every if c["uuid"] not in {k["uuid"] for k in kept}]
    if kept and dropped:
        assert max(order[c["indicator"]] for c in kept) <= min(order[c["indicator"]] for c in dropped)
    assert [c["uuid"] for c in kept] == [c["uuid"] for c in every if c in kept]  # finding order is kept


def test_an_update_names_the_administration_it_rests_on() -> None:
    dos = dt.date(2025, 3, 4)
    inj = Injection(ref="MedicationAdministration/ma-1", kind="administration", status="completed", drug=B12,
                    drug_coded=True, route=RouteClass.IM, route_coded=True, dose=Decimal(1000), dose_documented=True,
                    timed=True, date_of_service=dos, performer=True, diagnoses=("D51.0",))
    captured_line = ChargeLine("J3420", "hcpcs", Decimal(2), date_of_service=dos, id="ci-1")  # no service
    visit = Visit(hook_kind="encounter", patient_ref="Patient/p1", encounter_ref="Encounter/e1",
                  setting=Setting.NON_FACILITY, date_of_service=dos, injections=(inj,), charges=(captured_line,),
                  payer=CONFIGURED_PAYERS[0], policy=POLICY)
    findings = [f for f in evaluate(visit, ALL_RULES) if f.rule == "charge-units-mismatch"]
    assert len(findings) == 1
    captured = {"ci-1": captured_json(captured_line, visit)}
    [card] = CardRenderer(TEMPLATES, INDICATORS).render(findings, visit, "h", captured)
    [action] = card["suggestions"][0]["actions"]
    assert action["type"] == "update" and action["resource"]["quantity"] == {"value": 1}
    assert action["resource"].get("service") == [{"reference": inj.ref}]


@given(namespace=st.uuids(), name=st.text())
def test_card_ids_are_the_standard_name_based_uuids(namespace: uuid.UUID, name: str) -> None:
    expected = uuid.uuid5(namespace, name)
    assert name_uuid(namespace.bytes, name) == (expected.bytes, str(expected))


@given(value=st.text(alphabet=st.sampled_from("ab \\`*_[]<>|~#()!é\n")))
def test_markdown_escaping_puts_a_backslash_before_each_special_character(value: str) -> None:
    escaped = escape_markdown(value)
    assert re.sub(r"\\(.)", r"\1", escaped, flags=re.DOTALL) == value
    assert escaped == "".join("\\" + c if c in "\\`*_[]<>|~" else c for c in value)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@given(value=st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=5))
def test_a_json_copy_is_equal_and_shares_nothing(value: dict[str, Any]) -> None:
    """The captured ChargeItem an update card carries: copied whole, whatever JSON holds (big integers too)."""
    copied = json_copy(value)
    assert copied == value and repr(copied) == repr(value)  # repr: -0.0 stays -0.0, 1 stays an int

    def containers(node: Any) -> list[int]:
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
        return ([id(node)] if isinstance(node, dict | list) else []) + [i for c in children for i in containers(c)]

    assert not set(containers(copied)) & set(containers(value))


def general_ref_key(reference: str) -> str:
    """ref_key's rule spelled out: the last type/id pair, before any _history."""
    parts = [p for p in reference.split("/") if p]
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    return "/".join(parts[-2:]) if len(parts) >= 2 else reference


@given(reference=st.text(alphabet=st.sampled_from("ab/_history:.1"), min_size=1, max_size=30)
       | st.from_regex(r"[A-Za-z]{1,12}/[A-Za-z0-9.\-]{1,20}", fullmatch=True))
def test_a_reference_is_keyed_by_its_last_type_and_id(reference: str) -> None:
    assert ref_key(reference) == general_ref_key(reference)


def test_reference_keys() -> None:
    assert ref_key("Encounter/enc-1") == "Encounter/enc-1"
    assert ref_key("http://x/fhir/Encounter/1/_history/2") == "Encounter/1"
    assert ref_key("Encounter/1/_history/2") == "Encounter/1"
    assert ref_key("/Encounter/1") == "Encounter/1"
    assert ref_key("Encounter/") == "Encounter/"
    assert ref_key("_history/2") == "_history/2"
    assert ref_key("") is None and ref_key(None) is None
