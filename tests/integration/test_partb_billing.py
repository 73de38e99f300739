"""Billing from CMS's quarterly Part B files, through the service as an EHR calls it (issue 18).

Every case is a real drug with its real NDC, and the codes, units and payment limits CMS's files give for
the quarter of its date of service: Depo-Medrol under J1030 in 2024 Q1 and J1010 from 2024 Q2, bortezomib
under J9041, Prolia under J0897, trivalent flu vaccines from the 2024-25 season."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.cardshape import check_shape
from tests.charts import (
    CPT,
    CVX,
    HCPCS,
    NDC,
    RXNORM,
    administration,
    answer_charges,
    charge,
    discharge,
    medication,
    rules_of,
)

SERVICE = "/cds-services/injection-billing-encounter-discharge"
DEPO_40 = "00009-0280-02"  # Depo-Medrol 40 mg/mL, 5 mL vial: J1030 x5 in 2024 Q1, J1010 x200 after
DEPO_80 = "00009-0306-02"  # Depo-Medrol 80 mg/mL, 5 mL vial
BORTEZOMIB = "00143-9098-01"  # Hikma, J9041 (0.1 mg)
PROLIA = "55513-0710-01"  # denosumab 60 mg/mL, J0897 (1 mg)


@pytest.fixture
def call(make_client: Callable[..., FlaskClient]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    client = make_client(fhir={"allowed_servers": ["http://127.0.0.1:9/fhir"]})

    def post(body: dict[str, Any]) -> dict[str, Any]:
        response = client.post(SERVICE, json=body)
        assert response.status_code == 200, response.get_data(as_text=True)
        answer: dict[str, Any] = response.get_json()
        captured = [e["resource"]["id"] for e in body["prefetch"]["charges"].get("entry", [])]
        assert check_shape(answer, "encounter", captured) == []
        return answer

    return post


def given(day: str, concept: dict[str, Any], dose: tuple[float, str] | None, route: str | None = "IM",
          **more: Any) -> dict[str, Any]:
    """One administration at 10:15 local time on `day`, charted with this drug, dose and route."""
    return administration(1, concept, at=f"{day}T10:15:00-05:00", dose=dose, route=route, **more)


def billed(answer: dict[str, Any]) -> set[tuple[str, float]]:
    return {(code, units) for _, code, units, _ in answer_charges(answer)}


def card(answer: dict[str, Any], rule: str) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in answer["cards"] if c["source"]["topic"]["code"] == rule)
    return found


# --- the code in force by date of service ---------------------------------------------------------------

def test_depo_medrol_bills_j1030_in_2024_q1(call: Callable[..., dict[str, Any]]) -> None:
    answer = call(discharge("2024-02-15", [given("2024-02-15", medication((NDC, DEPO_40)), (40, "mg"))]))
    assert billed(answer) == {("96372", 1), ("J1030", 1)}


def test_depo_medrol_bills_j1010_per_mg_from_2024_q2(call: Callable[..., dict[str, Any]]) -> None:
    answer = call(discharge("2025-06-10", [given("2025-06-10", medication((NDC, DEPO_40)), (80, "mg"))]))
    assert billed(answer) == {("96372", 1), ("J1010", 80)}


def test_the_same_drug_by_name_follows_the_date_too(call: Callable[..., dict[str, Any]]) -> None:
    """No NDC: the catalog's methylprednisolone acetate is J1010 now, and 80 mg fits J1040 in 2024 Q1."""
    old = call(discharge("2024-02-15", [given("2024-02-15", medication(text="Depo-Medrol 80 mg/mL"), (80, "mg"))]))
    new = call(discharge("2025-06-10", [given("2025-06-10", medication(text="Depo-Medrol 80 mg/mL"), (80, "mg"))]))
    assert billed(old) == {("96372", 1), ("J1040", 1)}
    assert billed(new) == {("96372", 1), ("J1010", 80)}


@pytest.mark.parametrize("form", ["00009-0280-02", "0009-0280-02", "00009028002", "0009028002"])
def test_every_ndc_form_finds_the_product(call: Callable[..., dict[str, Any]], form: str) -> None:
    answer = call(discharge("2025-06-10", [given("2025-06-10", medication((NDC, form)), (40, "mg"))]))
    assert billed(answer) == {("96372", 1), ("J1010", 40)}


@pytest.mark.parametrize(("form", "code", "units"), [
    ("63323-044-44", "J3420", 1),  # 5-3-2: Fresenius cyanocobalamin 63323-0044-44
    ("00143-9098-1", "J9041", 25),  # 5-4-1: bortezomib 2.5 mg
])
def test_short_ndc_segments_are_padded(call: Callable[..., dict[str, Any]], form: str, code: str,
                                       units: int) -> None:
    dose = (1000, "ug") if code == "J3420" else (2.5, "mg")
    answer = call(discharge("2025-06-10", [given("2025-06-10", medication((NDC, form)), dose, route="SC")],
                            diagnosis="D51.0" if code == "J3420" else "C90.00"))
    assert any(c == code and u == units for _, c, u, _ in answer_charges(answer))


def test_one_ml_of_depo_medrol_40_is_40_units_from_the_package_row(call: Callable[..., dict[str, Any]]) -> None:
    """No strength charted: the NDC's package (5 mL, 200 billing units) gives 40 units per mL."""
    answer = call(discharge("2025-06-10", [given("2025-06-10", medication((NDC, DEPO_40)), (1, "mL"))]))
    assert billed(answer) == {("96372", 1), ("J1010", 40)}
    assert "dose-missing" not in rules_of(answer)


def test_one_vial_is_the_packages_units_per_item(call: Callable[..., dict[str, Any]]) -> None:
    answer = call(discharge("2025-06-10", [given("2025-06-10", medication((NDC, PROLIA)), (1, "{syringe}"),
                                                 route="SC")], diagnosis="M81.0"))
    assert billed(answer) == {("96372", 1), ("J0897", 60)}


# --- drugs the hand-written catalog never knew ---------------------------------------------------------

def test_bortezomib_sc_is_chemotherapy_96401_with_j9041_x25(call: Callable[..., dict[str, Any]]) -> None:
    answer = call(discharge("2025-06-10", [given("2025-06-10", medication((NDC, BORTEZOMIB)), (2.5, "mg"),
                                                 route="SC")], diagnosis="C90.00"))
    assert billed(answer) == {("96401", 1), ("J9041", 25)}
    assert {"admin-code-alternative"} <= rules_of(answer) and "admin-96372" not in rules_of(answer)


def test_bortezomib_by_name_takes_the_generic_code_not_a_makers(call: Callable[..., dict[str, Any]]) -> None:
    """Both J9041 and J9049 ('Inj, bortezomib, hospira') bill bortezomib; with no NDC, not the maker's own."""
    answer = call(discharge("2025-06-10", [given("2025-06-10", medication(text="bortezomib 2.5 mg"), (2.5, "mg"),
                                                 route="SC")], diagnosis="C90.00"))
    assert billed(answer) == {("96401", 1), ("J9041", 25)}


def test_denosumab_is_96372_with_j0897_per_mg(call: Callable[..., dict[str, Any]]) -> None:
    answer = call(discharge("2025-06-10", [given("2025-06-10", medication((NDC, PROLIA)), (60, "mg"), route="SC")],
                            diagnosis="M81.0"))
    assert billed(answer) == {("96372", 1), ("J0897", 60)}
    assert "route-contrary-to-label" not in rules_of(answer)  # no label routes are configured for it


def test_ondansetron_im_by_name_is_the_injection_not_the_oral_code(call: Callable[..., dict[str, Any]]) -> None:
    answer = call(discharge("2025-06-10", [given("2025-06-10", medication(text="Ondansetron 4 mg"), (4, "mg"))],
                            diagnosis="R11.2"))
    assert billed(answer) == {("96372", 1), ("J2405", 4)}


def test_a_drug_found_nowhere_gets_drug_unknown_and_no_drug_line(call: Callable[..., dict[str, Any]]) -> None:
    answer = call(discharge("2025-06-10", [given("2025-06-10", medication((RXNORM, "99999991"),
                                                                         text="Unobtainium 5 mg"), (5, "mg"))]))
    assert billed(answer) == {("96372", 1)}
    unknown = card(answer, "drug-unknown")
    assert unknown["indicator"] == "warning"
    assert "96372" in unknown["summary"] and "96401" in unknown["detail"]


def test_a_name_two_drugs_share_is_not_guessed(call: Callable[..., dict[str, Any]]) -> None:
    """Methylprednisolone acetate (J1010) or sodium succinate (J2919): the chart does not say which."""
    answer = call(discharge("2025-06-10", [given("2025-06-10", medication(text="methylprednisolone 40 mg"),
                                                 (40, "mg"))]))
    assert billed(answer) == {("96372", 1)}
    assert "J1010" in card(answer, "drug-unknown")["detail"] and "J2919" in card(answer, "drug-unknown")["detail"]


def test_a_chart_hcpcs_code_identifies_the_drug(call: Callable[..., dict[str, Any]]) -> None:
    answer = call(discharge("2025-06-10", [given("2025-06-10", medication((HCPCS, "J3121"), text="Testosterone"),
                                                 (200, "mg"))], diagnosis="E29.1"))
    assert billed(answer) == {("96372", 1), ("J3121", 200)}


# --- code-not-current ------------------------------------------------------------------------------

def test_a_captured_j1040_in_2025_is_updated_to_j1010_with_units_from_the_dose(
    call: Callable[..., dict[str, Any]],
) -> None:
    body = discharge("2025-06-10", [given("2025-06-10", medication((NDC, DEPO_80)), (80, "mg"))],
                     charges=[charge("ci-96372", "96372", day="2025-06-10"),
                              charge("ci-drug", "J1040", day="2025-06-10")])
    answer = call(body)
    stale = card(answer, "code-not-current")
    [action] = stale["suggestions"][0]["actions"]
    assert action["type"] == "update" and action["resource"]["id"] == "ci-drug"
    assert action["resource"]["code"]["coding"][0]["code"] == "J1010"
    assert action["resource"]["quantity"]["value"] == 80
    assert "charge-unsupported" not in rules_of(answer)  # the line has its administration behind it
    assert not any(code == "J1010" and rule != "code-not-current" for rule, code, _, _ in answer_charges(answer))


@pytest.mark.parametrize("near_miss", ["code", "quantity"])
def test_an_update_carries_the_captured_charge_as_repaired(call: Callable[..., dict[str, Any]],
                                                           near_miss: str) -> None:
    """A captured ChargeItem read after a repair (its code or quantity sent as a list of one) is updated from
    its repaired JSON: the update is valid R4, not the near-miss sent back."""
    stale_line = charge("ci-drug", "J1040", day="2025-06-10")
    stale_line[near_miss] = [stale_line[near_miss]]
    body = discharge("2025-06-10", [given("2025-06-10", medication((NDC, DEPO_80)), (80, "mg"))],
                     charges=[charge("ci-96372", "96372", day="2025-06-10"), stale_line])
    answer = call(body)
    [action] = card(answer, "code-not-current")["suggestions"][0]["actions"]
    assert action["resource"]["code"]["coding"][0]["code"] == "J1010"
    assert action["resource"]["quantity"] == {"value": 80}
    assert "read as that value" in card(answer, "invalid-resource")["detail"]


def test_a_captured_j1030_in_2024_q1_is_current(call: Callable[..., dict[str, Any]]) -> None:
    body = discharge("2024-02-15", [given("2024-02-15", medication((NDC, DEPO_40)), (40, "mg"))],
                     charges=[charge("ci-96372", "96372", day="2024-02-15"),
                              charge("ci-drug", "J1030", day="2024-02-15")])
    assert "code-not-current" not in rules_of(call(body))


# --- vaccines ----------------------------------------------------------------------------------------

def test_a_flu_vaccine_in_2025_bills_the_trivalent_code(call: Callable[..., dict[str, Any]]) -> None:
    answer = call(discharge("2025-03-04", [given("2025-03-04", medication((CVX, "150")), (0.5, "mL"))],
                            diagnosis="Z23"))
    assert billed(answer) == {("G0008", 1), ("90656", 1)}


def test_a_flu_vaccine_in_2024_q1_bills_the_quadrivalent_code_then_listed(
    call: Callable[..., dict[str, Any]],
) -> None:
    answer = call(discharge("2024-02-04", [given("2024-02-04", medication((CVX, "150")), (0.5, "mL"))],
                            diagnosis="Z23"))
    assert billed(answer) == {("G0008", 1), ("90686", 1)}


def test_prevnar_20_by_cvx_216_is_a_pneumococcal_vaccine(call: Callable[..., dict[str, Any]]) -> None:
    answer = call(discharge("2025-03-04", [given("2025-03-04", medication((CVX, "216")), (0.5, "mL"))],
                            diagnosis="Z23"))
    assert billed(answer) == {("G0009", 1), ("90677", 1)}
    assert "96372" not in {code for _, code, _, _ in answer_charges(answer)}


def test_a_vaccine_coded_by_cpt_is_a_vaccine(call: Callable[..., dict[str, Any]]) -> None:
    answer = call(discharge("2025-03-04", [given("2025-03-04", medication((CPT, "90684")), (0.5, "mL"))],
                            diagnosis="Z23", payer="commercial"))
    assert billed(answer) == {("90471", 1), ("90684", 1)}


def test_an_unknown_cvx_is_still_a_vaccine(call: Callable[..., dict[str, Any]]) -> None:
    answer = call(discharge("2025-03-04", [given("2025-03-04", medication((CVX, "999")), (0.5, "mL"))],
                            diagnosis="Z23", payer="commercial"))
    assert billed(answer) == {("90471", 1)}
    assert "drug-unknown" in rules_of(answer) and "admin-96372" not in rules_of(answer)


# --- the defects the coder found ----------------------------------------------------------------------

def test_a_ten_minute_iv_infusion_is_a_push(call: Callable[..., dict[str, Any]]) -> None:
    admin = given("2025-03-04", medication((RXNORM, "2193"), text="Ceftriaxone 1 g"), (1, "g"), route="IV",
                  end="2025-03-04T10:25:00-05:00")
    answer = call(discharge("2025-03-04", [admin], diagnosis="J18.9"))
    assert billed(answer) == {("96374", 1), ("J0696", 4)}


def test_a_sixteen_minute_iv_infusion_is_an_infusion(call: Callable[..., dict[str, Any]]) -> None:
    admin = given("2025-03-04", medication((RXNORM, "2193"), text="Ceftriaxone 1 g"), (1, "g"), route="IV",
                  end="2025-03-04T10:31:00-05:00")
    answer = call(discharge("2025-03-04", [admin], diagnosis="J18.9"))
    assert billed(answer) == {("96365", 1), ("J0696", 4)}


def test_an_intra_articular_injection_is_no_96372_and_no_route_missing(call: Callable[..., dict[str, Any]]) -> None:
    answer = call(discharge("2025-06-10", [given("2025-06-10", medication((NDC, DEPO_40)), (40, "mg"),
                                                 route="intra-articular")], diagnosis="M17.11"))
    assert not {"route-missing", "admin-96372", "route-contrary-to-label"} & rules_of(answer)
    assert billed(answer) == {("J1010", 40)}  # the drug line; the joint injection is coded as a procedure


# --- money on the card ------------------------------------------------------------------------------

def test_the_drug_line_shows_medicares_payment_limit_for_its_quarter(call: Callable[..., dict[str, Any]]) -> None:
    answer = call(discharge("2025-06-10", [given("2025-06-10", medication((NDC, DEPO_40)), (40, "mg"))]))
    detail = card(answer, "admin-96372")["detail"]
    assert "Medicare Part B payment limit for J1010 x40: **$4.40** ($0.110 per unit, CMS ASP file 2025 Q2)" in detail
    assert "not this payer's price" in detail
    assert "$4.40" in card(answer, "drug-waste-modifier")["detail"]  # a documentation card about that line


def test_the_limit_never_changes_the_suggestion(call: Callable[..., dict[str, Any]]) -> None:
    commercial = call(discharge("2025-06-10", [given("2025-06-10", medication((NDC, DEPO_40)), (40, "mg"))],
                                payer="commercial"))
    assert billed(commercial) == {("96372", 1), ("J1010", 40)}


def test_a_date_after_the_last_quarter_uses_it_and_says_so(call: Callable[..., dict[str, Any]]) -> None:
    answer = call(discharge("2026-06-10", [given("2026-06-10", medication((NDC, DEPO_40)), (40, "mg"))]))
    assert billed(answer) == {("96372", 1), ("J1010", 40)}
    detail = card(answer, "admin-96372")["detail"]
    assert "after the last CMS quarter loaded (2026 Q1)" in detail and "CMS ASP file 2026 Q1" in detail


@pytest.mark.parametrize(("dose", "why"), [
    ((1e308, "mg"), "more J1010 units than any"), ((1e20, "ug"), "more J1010 units than any"),
    ((1e308, "{vial}"), "more J1010 units than any"), ((1e308, "mL"), "more J1010 units than any"),
])
def test_a_dose_past_any_claim_is_no_drug_line_and_says_why(call: Callable[..., dict[str, Any]],
                                                          dose: tuple[float, str], why: str) -> None:
    answer = call(discharge("2025-06-10", [given("2025-06-10", medication((NDC, DEPO_40)), dose)]))
    assert billed(answer) == {("96372", 1)}
    assert why in " ".join(card(answer, "dose-missing")["detail"].split())


@pytest.mark.parametrize("at", ["0001-01-01T00:00:00Z", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_an_administration_that_cannot_be_placed_in_time_is_an_invalid_resource(
    call: Callable[..., dict[str, Any]], at: str,
) -> None:
    """.NET's DateTime.MinValue in an EHR export, in the encounter's zone (-05:00), is before year 1."""
    placed = given("2025-06-10", medication((NDC, DEPO_40)), (40, "mg"))
    unplaced = administration(2, medication((NDC, DEPO_40)), at=at, dose=(40, "mg"))
    answer = call(discharge("2025-06-10", [placed, unplaced]))
    invalid = card(answer, "invalid-resource")
    assert "MedicationAdministration/ma-2" in invalid["summary"] + invalid.get("detail", "")
    assert billed(answer) == {("96372", 1), ("J1010", 40)}  # the rest is evaluated


# --- an NDC under several codes, stale lines, and what a name must not match --------------------------

@pytest.mark.parametrize(("ndc", "dose", "route", "line"), [
    ("00069-1305-10", (10000, "U"), "SC", ("Q5106", 10)),  # Retacrit: the non-ESRD code, not Q5105 (dialysis)
    ("59353-0400-09", (100, "ug"), "SC", ("J0888", 100)),  # Mircera: non-ESRD J0888, not J0887
    ("49591-0051-51", (1, "mL"), "IV", ("J1573", 2)),  # Hepagam B given IV: J1573, not the IM code J1571
])
def test_an_ndc_under_several_codes_takes_the_one_for_the_office_and_route(
    call: Callable[..., dict[str, Any]], ndc: str, dose: tuple[float, str], route: str, line: tuple[str, int],
) -> None:
    answer = call(discharge("2025-06-10", [given("2025-06-10", medication((NDC, ndc)), dose, route=route)],
                            diagnosis="D63.1"))
    assert line in billed(answer)


def test_an_ndc_under_two_strengths_takes_the_one_the_dose_fits(call: Callable[..., dict[str, Any]]) -> None:
    """Methotrexate 00143-9519-10 was listed under J9250 (5 mg) and J9260 (50 mg) in 2024 Q1."""
    answer = call(discharge("2024-02-15", [given("2024-02-15", medication((NDC, "00143-9519-10")), (50, "mg"),
                                                 route="SC")], diagnosis="M06.9"))
    assert ("J9260", 1) in billed(answer)


def test_a_drug_line_beside_an_unidentified_drug_is_not_deleted(call: Callable[..., dict[str, Any]]) -> None:
    body = discharge("2025-06-10", [given("2025-06-10", medication(text="Zofran 4 mg/2 mL"), (4, "mg"))],
                     charges=[charge("ci-96372", "96372", day="2025-06-10"),
                              charge("ci-drug", "J2405", units=4, day="2025-06-10")])
    assert "charge-unsupported" not in rules_of(call(body))


def test_a_dropped_code_of_another_drug_is_unsupported_and_the_drug_line_suggested(
    call: Callable[..., dict[str, Any]],
) -> None:
    b12 = given("2025-06-10", medication((RXNORM, "309594")), (1000, "ug"))
    answer = call(discharge("2025-06-10", [b12], charges=[charge("ci-96372", "96372", day="2025-06-10"),
                                                          charge("ci-j1040", "J1040", day="2025-06-10")]))
    assert ("J3420", 1) in billed(answer) and "code-not-current" not in rules_of(answer)
    assert card(answer, "charge-unsupported")["suggestions"][0]["actions"][0]["resourceId"] == "ChargeItem/ci-j1040"


def test_two_dropped_lines_of_one_dose_are_one_update_and_one_removal(call: Callable[..., dict[str, Any]]) -> None:
    body = discharge("2025-06-10", [given("2025-06-10", medication((NDC, DEPO_80)), (80, "mg"))],
                     charges=[charge("ci-a", "J1030", units=2, day="2025-06-10"),
                              charge("ci-b", "J1040", day="2025-06-10")])
    answer = call(body)
    actions = [c["suggestions"][0]["actions"][0] for c in answer["cards"]
               if c["source"]["topic"]["code"] == "code-not-current"]
    assert [a["type"] for a in actions] == ["update", "delete"]
    assert actions[0]["resource"]["code"]["coding"][0]["code"] == "J1010"


def test_a_charted_code_dropped_before_the_date_is_the_drugs_code_then(call: Callable[..., dict[str, Any]]) -> None:
    answer = call(discharge("2025-03-04", [given("2025-03-04", medication((CPT, "90686")), (0.5, "mL"))],
                            diagnosis="Z23"))
    assert billed(answer) == {("G0008", 1), ("90656", 1)}


def test_an_unclassified_code_says_nothing_of_the_drug(call: Callable[..., dict[str, Any]]) -> None:
    answer = call(discharge("2025-06-10", [given("2025-06-10", medication((HCPCS, "J3490"), text="sermorelin"),
                                                 (25, "mg"))]))
    assert billed(answer) == {("96372", 1)} and "drug-unknown" in rules_of(answer)
    assert "compounded-drug" not in rules_of(answer)


def test_a_volume_beyond_one_vial_of_powder_is_not_guessed(call: Callable[..., dict[str, Any]]) -> None:
    """Ceftriaxone 1 g vial (00143-9857-25): CMS gives its size as 1, a vial, not mL."""
    answer = call(discharge("2025-06-10", [given("2025-06-10", medication((NDC, "00143-9857-25")), (2.1, "mL"))],
                            diagnosis="J18.9"))
    assert billed(answer) == {("96372", 1)} and "dose-missing" in rules_of(answer)


def test_a_diluent_named_after_the_drug_is_not_billed(call: Callable[..., dict[str, Any]]) -> None:
    answer = call(discharge("2025-06-10", [given("2025-06-10", medication(
        text="Zofran 4 mg/2 mL diluted in sodium chloride 0.9%"), (2, "mL"), route="IV")], diagnosis="R11.2"))
    assert not any(code.startswith("J70") for code, _ in billed(answer))


@pytest.mark.parametrize("text", ["Tdap (Boostrix) 0.5 mL", "RSV vaccine 0.5 mL"])
def test_a_vaccine_by_name_is_never_96372(call: Callable[..., dict[str, Any]], text: str) -> None:
    answer = call(discharge("2025-06-10", [given("2025-06-10", medication(text=text), (0.5, "mL"))],
                            diagnosis="Z23", payer="commercial"))
    assert ("90471", 1) in billed(answer) and "96372" not in {code for code, _ in billed(answer)}


def test_im_in_the_text_wins_over_a_site_word(call: Callable[..., dict[str, Any]]) -> None:
    admin = given("2025-06-10", medication((NDC, DEPO_40)), (40, "mg"), route=None)
    admin["dosage"]["text"] = "40 mg IM for rectal pain"
    answer = call(discharge("2025-06-10", [admin]))
    assert ("96372", 1) in billed(answer) and "route-uncoded" in rules_of(answer)


# --- the second review's cases ---------------------------------------------------------------------------

def test_a_code_with_no_replacement_is_flagged_and_its_line_kept(call: Callable[..., dict[str, Any]]) -> None:
    """Calcitonin (J0630) was last listed in 2025 Q1 and nothing replaced it: a warning, never a removal."""
    body = discharge("2025-06-10", [given("2025-06-10", medication((NDC, "42023-0205-01")), (100, "U"))],
                     charges=[charge("ci-96372", "96372", day="2025-06-10"),
                              charge("ci-drug", "J0630", units=4, day="2025-06-10")])
    answer = call(body)
    stale = card(answer, "code-not-current")
    assert "suggestions" not in stale and "no other code" in " ".join(stale["detail"].split())
    assert "charge-unsupported" not in rules_of(answer)


def test_one_stale_line_for_two_doses_of_one_drug_goes_to_the_first(call: Callable[..., dict[str, Any]]) -> None:
    first = given("2025-06-10", medication((NDC, DEPO_80)), (80, "mg"))
    second = administration(2, medication((NDC, DEPO_80)), at="2025-06-10T10:45:00-05:00", dose=(80, "mg"))
    line = charge("ci-drug", "J1040", units=2, day="2025-06-10", admin=None)
    answer = call(discharge("2025-06-10", [first, second], charges=[line]))
    updates = [(rule, code, units) for rule, code, units, _ in answer_charges(answer) if code == "J1010"]
    assert sorted(updates) == [("admin-96372", "J1010", 80), ("code-not-current", "J1010", 80)]


@pytest.mark.parametrize(("text", "code"), [("Zofran (ondansetron) 4 mg", "J2405"),
                                            ("Generic ondansetron 4 mg", "J2405"),
                                            ("Ondansetron hydrochloride 4 mg", "J2405")])
def test_a_brand_first_or_salted_name_finds_the_injection(call: Callable[..., dict[str, Any]], text: str,
                                                         code: str) -> None:
    answer = call(discharge("2025-06-10", [given("2025-06-10", medication(text=text), (4, "mg"))], diagnosis="R11.2"))
    assert (code, 4) in billed(answer)


@pytest.mark.parametrize(("cpt", "payer", "admin"), [("90679", "commercial", "90471"), ("91320", "commercial", "90471"),
                                                     ("90707", "commercial", "90471")])
def test_a_vaccine_cpt_code_is_its_product_priced_by_cms_or_not(
    call: Callable[..., dict[str, Any]], cpt: str, payer: str, admin: str,
) -> None:
    answer = call(discharge("2025-06-10", [given("2025-06-10", medication((CPT, cpt)), (0.5, "mL"))],
                            diagnosis="Z23", payer=payer))
    assert billed(answer) == {(admin, 1), (cpt, 1)}


def test_a_liquid_drawn_from_two_vials_is_read_through_the_package(call: Callable[..., dict[str, Any]]) -> None:
    """00003-0293-05, 1 mL vials that CMS counts as 4 billable units (J3301, per 10 mg) each: 2 mL is J3301 x8."""
    answer = call(discharge("2025-06-10", [given("2025-06-10", medication((NDC, "00003-0293-05")), (2, "mL"))],
                            diagnosis="M54.50"))
    assert ("J3301", 8) in billed(answer)


def test_leuprolide_bills_by_strength_and_class_follows_the_code(call: Callable[..., dict[str, Any]]) -> None:
    gyn = call(discharge("2025-06-10", [given("2025-06-10", medication(text="Lupron Depot 3.75 mg"), (3.75, "mg"))],
                         diagnosis="N80.0"))
    prostate = call(discharge("2025-06-10", [given("2025-06-10", medication(text="Lupron Depot 22.5 mg"),
                                                   (22.5, "mg"))], diagnosis="C61"))
    assert billed(gyn) == {("96372", 1), ("J1950", 1)}
    assert billed(prostate) == {("96402", 1), ("J9217", 3)}


def test_a_captured_chemotherapy_code_is_not_rewritten_when_the_drug_is_unknown(
    call: Callable[..., dict[str, Any]],
) -> None:
    body = discharge("2025-06-10", [given("2025-06-10", medication(text="Zofran 4 mg"), (4, "mg"), route="SC")],
                     charges=[charge("ci-admin", "96401", day="2025-06-10"),
                              charge("ci-drug", "J9041", units=25, day="2025-06-10")])
    assert "charge-code-mismatch" not in rules_of(call(body))
