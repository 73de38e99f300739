"""Write a synthetic FHIR Bulk Data export of N encounters for `cds-service audit` (issue 8).

    .venv/bin/python benchmarks/make_export.py N OUT_DIR [--seed S] [--gzip] [--split K]

One NDJSON file per resource type, or K per type with --split (Encounter.ndjson, Encounter.001.ndjson,
Encounter-2.ndjson, ...), gzipped with --gzip. A seed always writes the same resources in the same order
within a type, whatever --gzip and --split say. Patients are made and written one at a time.

The variety is what the rules look at: the drugs of config/default.yaml's catalog (billed as BILLED says,
with CMS's 2025 codes and units), coded by RxNorm, NDC or CVX, by a referenced or contained Medication, or
text only;
routes in SNOMED CT or HL7 v3, only as text, missing, IV push or infusion; doses missing, too high, in mg
for a mcg drug, in mL; administrations not done or entered in error; charges captured right, with wrong
units or code, E/M 99213 with and without modifier 25, 99211, orphans; Medicare Part B (Source of Payment
Typology, or payor name only) or commercial coverage, none, or a switch mid-year; diagnoses that support
the drug (D51.0 for B12) or not; several UTC offsets and times written in UTC; monthly B12 over a year,
now and then a dose too soon.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import io
import json
import math
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = yaml.safe_load((ROOT / "config" / "default.yaml").read_text(encoding="utf-8"))
CATALOG, BILLING = DEFAULT["drugs"], DEFAULT["billing"]
YEAR = 2025
OFFSETS = [dt.timezone(dt.timedelta(hours=h)) for h in (-5, -6, -7, -8, -4, -10, 0, 1)]
SNOMED, V3_ROUTE = "http://snomed.info/sct", "http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration"
RXNORM, NDC, CVX = "http://www.nlm.nih.gov/research/umls/rxnorm", "http://hl7.org/fhir/sid/ndc", "http://hl7.org/fhir/sid/cvx"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
CPT, HCPCS = "http://www.ama-assn.org/go/cpt", "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
MODIFIER_URL = "https://injection-billing.org/fhir/StructureDefinition/procedure-modifier"
SOPT = "urn:oid:2.16.840.1.113883.3.221.5"
UNIT_WORDS = {"ug": "mcg", "mg": "mg", "mL": "mL"}
# drug key -> how a coder bills it in 2025 (CMS's 2025 Part B files; J3490 and J1050 are not in them): the
# code, and the billing unit the doses below are written in.
BILLED: dict[str, tuple[str, float, str]] = {
    "cyanocobalamin": ("J3420", 1000, "ug"), "hydroxocobalamin": ("J3425", 10, "ug"),
    "methylcobalamin": ("J3490", 1000, "ug"), "ketorolac": ("J1885", 15, "mg"), "ceftriaxone": ("J0696", 250, "mg"),
    "methylprednisolone-acetate": ("J1010", 1, "mg"), "triamcinolone": ("J3301", 10, "mg"),
    "dexamethasone": ("J1100", 1, "mg"), "medroxyprogesterone": ("J1050", 1, "mg"),
    "testosterone-cypionate": ("J1071", 1, "mg"), "promethazine": ("J2550", 50, "mg"),
    "leuprolide": ("J9217", 7.5, "mg"), "methotrexate": ("J9260", 50, "mg"),
    "influenza-vaccine": ("90656", 0.5, "mL"), "pneumococcal-vaccine": ("90732", 0.5, "mL"),
    "hepatitis-b-vaccine": ("90746", 1, "mL"),
}

# drug key -> (codings, or None for text only; doses in the billing unit of BILLED below; route)
DRUGS: dict[str, tuple[list[tuple[str, str, str]] | None, list[float], str]] = {
    "cyanocobalamin": ([(RXNORM, "309594", "cyanocobalamin 1000 MCG/ML Injectable Solution"),
                        (NDC, "63323-044-44", "Cyanocobalamin 1000 mcg/mL injection")], [1000], "IM"),
    "hydroxocobalamin": ([(RXNORM, "317106", "hydroxocobalamin 1000 MCG/ML Injectable Solution")], [1000], "IM"),
    "methylcobalamin": (None, [1000, 5000], "SC"),
    "ketorolac": ([(RXNORM, "35827", "ketorolac")], [30, 60], "IM"),
    "ceftriaxone": ([(RXNORM, "2193", "ceftriaxone")], [500, 1000], "IM"),
    "methylprednisolone-acetate": (None, [40, 80], "IM"),
    "triamcinolone": ([(RXNORM, "10759", "triamcinolone")], [40], "IM"),
    "dexamethasone": ([(RXNORM, "3264", "dexamethasone")], [4, 10], "IM"),
    "medroxyprogesterone": ([(RXNORM, "6691", "medroxyprogesterone")], [150], "IM"),
    "testosterone-cypionate": (None, [100, 200], "IM"),
    "promethazine": ([(RXNORM, "8745", "promethazine")], [25], "IM"),
    "leuprolide": ([(RXNORM, "42375", "leuprolide")], [7.5, 22.5], "IM"),
    "methotrexate": ([(RXNORM, "6851", "methotrexate")], [15, 25], "SC"),
    "influenza-vaccine": ([(CVX, "150", "influenza, injectable, quadrivalent, preservative free")], [0.5], "IM"),
    "pneumococcal-vaccine": ([(CVX, "33", "pneumococcal polysaccharide PPV23")], [0.5], "IM"),
    "hepatitis-b-vaccine": ([(CVX, "43", "hepatitis B vaccine, adult dosage")], [1], "IM"),
}
MIXED = ["ketorolac", "ceftriaxone", "methylprednisolone-acetate", "triamcinolone", "dexamethasone",
         "medroxyprogesterone", "testosterone-cypionate", "promethazine", "leuprolide", "methotrexate",
         "cyanocobalamin"]
ROUTES = {
    "IM": {"coding": [{"system": SNOMED, "code": "78421000", "display": "Intramuscular route (qualifier value)"}],
           "text": "Intramuscular"},
    "SC": {"coding": [{"system": SNOMED, "code": "34206005", "display": "Subcutaneous route (qualifier value)"}],
           "text": "Subcutaneous"},
    "v3-IM": {"coding": [{"system": V3_ROUTE, "code": "IM", "display": "Injection, intramuscular"}]},
    "v3-SC": {"coding": [{"system": V3_ROUTE, "code": "SQ", "display": "Injection, subcutaneous"}]},
    "text-IM": {"text": "IM"},
    "text-SC": {"text": "deep subcut"},
    "IV": {"coding": [{"system": SNOMED, "code": "47625008", "display": "Intravenous route (qualifier value)"},
                      {"system": V3_ROUTE, "code": "IVPUSH", "display": "Injection, intravenous, push"}],
           "text": "IV Push"},
}
MEDICATIONS = [  # referenced as Medication/<id> by some administrations
    {"resourceType": "Medication", "id": "med-b12-vial", "code": {
        "coding": [{"system": NDC, "code": "0517-0031-25", "display": "Cyanocobalamin 1000 mcg/mL, 25 x 1 mL"}]},
     "ingredient": [{"itemCodeableConcept": {"text": "cyanocobalamin"}, "strength": {
         "numerator": {"value": 1000, "unit": "mcg", "code": "ug"}, "denominator": {"value": 1, "unit": "mL"}}}]},
    {"resourceType": "Medication", "id": "med-testosterone", "code": {"text": "Testosterone cypionate 200 mg/mL"},
     "ingredient": [{"itemCodeableConcept": {"text": "testosterone cypionate"}, "strength": {
         "numerator": {"value": 200, "unit": "mg", "code": "mg"}, "denominator": {"value": 1, "unit": "mL"}}}]},
    {"resourceType": "Medication", "id": "med-medroxyprogesterone", "code": {
        "coding": [{"system": RXNORM, "code": "6691", "display": "medroxyprogesterone"}],
        "text": "Depo-Provera 150 mg/mL"}},
]
MEDICATION_OF = {"cyanocobalamin": "med-b12-vial", "testosterone-cypionate": "med-testosterone",
                 "medroxyprogesterone": "med-medroxyprogesterone"}
VISIT_DIAGNOSES = {
    "b12": [("D51.0", "Vitamin B12 deficiency anemia due to intrinsic factor deficiency"),
            ("E53.8", "Deficiency of other specified B group vitamins"), ("I10", "Essential (primary) hypertension")],
    "vaccine": [("Z23", "Encounter for immunization")],
    "mixed": [("M54.50", "Low back pain, unspecified"), ("J02.9", "Acute pharyngitis, unspecified"),
              ("N39.0", "Urinary tract infection, site not specified"),
              ("Z30.42", "Surveillance of injectable contraceptive"),
              ("E29.1", "Testicular hypofunction"), ("C61", "Malignant neoplasm of prostate"),
              ("M06.9", "Rheumatoid arthritis, unspecified")],
}


@dataclass(frozen=True)
class Given:
    """What the clinic would bill for one administration."""

    route: str  # IM, SC or IV
    admin_code: str | None
    drug_code: str | None
    units: int | None


class Files:
    """One NDJSON stream per resource type and split, opened on first use, round-robin within a type."""

    def __init__(self, out_dir: Path, split: int, compress: bool) -> None:
        self.out_dir, self.split, self.compress = out_dir, max(1, split), compress
        self.open: dict[str, IO[str]] = {}
        self.counts: dict[str, int] = {}

    def write(self, resource: dict[str, Any]) -> None:
        rtype = resource["resourceType"]
        k = self.counts.get(rtype, 0) % self.split
        self.counts[rtype] = self.counts.get(rtype, 0) + 1
        stem = rtype if k == 0 else f"{rtype}-{k}" if k % 2 == 0 else f"{rtype}.{k:03d}"
        name = stem + (".ndjson.gz" if self.compress else ".ndjson")
        if name not in self.open:
            path = self.out_dir / name
            raw = gzip.GzipFile(path, "wb", mtime=0) if self.compress else open(path, "wb")
            self.open[name] = io.TextIOWrapper(raw, encoding="utf-8")  # type: ignore[arg-type]
        self.open[name].write(json.dumps(resource, separators=(",", ":")) + "\n")

    def close(self) -> None:
        for fh in self.open.values():
            fh.close()


def ref(rtype: str, rid: str) -> dict[str, str]:
    return {"reference": f"{rtype}/{rid}"}


def concept(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def patient(rng: random.Random, index: int, encounters: int) -> Iterator[dict[str, Any]]:
    """One patient: coverage, problem list, then each encounter with its diagnoses, admins and charges."""
    pid = f"pt-{index:05d}-{rng.getrandbits(24):06x}"
    profile = rng.choices(["b12", "mixed", "vaccine"], weights=[45, 40, 15])[0]
    yield from coverages(rng, pid)
    problems = list(problem_list(rng, pid, profile))
    yield from problems
    offset = rng.choice(OFFSETS)
    for n, start in enumerate(visit_times(rng, profile, encounters, offset)):
        yield from encounter(rng, pid, n, start, profile, problems)


def coverages(rng: random.Random, pid: str) -> Iterator[dict[str, Any]]:
    kind = rng.choices(["medicare", "medicare-by-name", "commercial", "none", "switch"], weights=[38, 7, 38, 10, 7])[0]

    def coverage(n: int, medicare: bool, start: str, end: str | None = None, typed: bool = True) -> dict[str, Any]:
        code, display = ("121", "Medicare FFS") if medicare else ("51", "Managed Care (Private)")
        payor = "Centers for Medicare & Medicaid Services" if medicare else rng.choice(["Aetna", "Blue Cross", "Cigna"])
        out: dict[str, Any] = {"resourceType": "Coverage", "id": f"cov-{pid[3:]}-{n}", "status": "active"}
        if typed:
            out["type"] = {"coding": [{"system": SOPT, "code": code, "display": display}]}
        out |= {"beneficiary": ref("Patient", pid), "period": {"start": start, **({"end": end} if end else {})},
                "payor": [{"display": payor if typed else "Medicare Part B"}]}
        return out

    if kind in ("medicare", "medicare-by-name"):
        yield coverage(0, True, "2019-01-01", typed=kind == "medicare")
    elif kind == "commercial":
        yield coverage(0, False, "2020-06-01")
    elif kind == "switch":
        yield coverage(0, False, "2018-01-01", f"{YEAR}-06-30")
        yield coverage(1, True, f"{YEAR}-07-01")


def problem_list(rng: random.Random, pid: str, profile: str) -> Iterator[dict[str, Any]]:
    chosen = []
    if profile == "b12" and rng.random() < 0.75:
        chosen.append(VISIT_DIAGNOSES["b12"][rng.randrange(2)])
    if rng.random() < 0.3:
        chosen.append(("I10", "Essential (primary) hypertension"))
    for n, (code, display) in enumerate(chosen):
        yield condition(f"cond-{pid[3:]}-p{n}", pid, code, display, None, "2023-06-12T09:30:00-04:00")


def condition(cid: str, pid: str, code: str, display: str, eid: str | None, recorded: str) -> dict[str, Any]:
    category = "encounter-diagnosis" if eid else "problem-list-item"
    out = {
        "resourceType": "Condition", "id": cid,
        "clinicalStatus": concept("http://terminology.hl7.org/CodeSystem/condition-clinical", "active", "Active"),
        "category": [concept("http://terminology.hl7.org/CodeSystem/condition-category", category, category)],
        "code": concept(ICD10, code, display), "subject": ref("Patient", pid), "recordedDate": recorded,
    }
    return out | ({"encounter": ref("Encounter", eid)} if eid else {})


def visit_times(rng: random.Random, profile: str, count: int, offset: dt.tzinfo) -> list[dt.datetime]:
    """Monthly for B12 (now and then a dose too soon), else spread over the year; office hours, local time."""
    if profile == "b12":
        day, days = dt.date(YEAR, 1, 2) + dt.timedelta(days=rng.randrange(60)), []
        for _ in range(count):
            days.append(day)
            day += dt.timedelta(days=rng.choice([7, 12, 21] if rng.random() < 0.15 else [28, 30, 31, 35]))
    else:
        days = sorted(dt.date(YEAR, 1, 1) + dt.timedelta(days=rng.randrange(365)) for _ in range(count))
    return [dt.datetime(d.year, d.month, d.day, rng.randrange(8, 17), rng.choice([0, 15, 30, 45]), tzinfo=offset)
            for d in days]


def encounter(
    rng: random.Random, pid: str, n: int, start: dt.datetime, profile: str, problems: list[dict[str, Any]]
) -> Iterator[dict[str, Any]]:
    eid = f"enc-{pid[3:]}-{n:02d}"
    setting = rng.choices([("AMB", "11"), ("AMB", "22"), ("EMER", "23")], weights=[90, 6, 4])[0]
    status = "cancelled" if rng.random() < 0.02 else "finished"
    diagnoses = [condition(f"cond-{eid[4:]}-{k}", pid, code, display, eid, start.isoformat())
                 for k, (code, display) in enumerate(visit_diagnoses(rng, profile))]
    enc: dict[str, Any] = {
        "resourceType": "Encounter", "id": eid, "status": status,
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": setting[0]},
        "subject": ref("Patient", pid),
        "period": {"start": start.isoformat(),
                   "end": (start + dt.timedelta(minutes=rng.choice([20, 30, 45]))).isoformat()},
        "contained": [{"resourceType": "Location", "id": "loc1", "type": [{"coding": [{
            "system": "https://www.cms.gov/Medicare/Coding/place-of-service-codes/Place_of_Service_Code_Set",
            "code": setting[1]}]}]}],
        "location": [{"location": {"reference": "#loc1"}}],
    }
    if diagnoses and rng.random() < 0.5:
        enc["diagnosis"] = [{"condition": ref("Condition", d["id"])} for d in diagnoses]
    yield enc
    yield from diagnoses
    if status == "cancelled":
        return
    admins = [administration(rng, pid, eid, f"{eid[4:]}-{k}", start, profile, diagnoses or problems)
              for k in range(rng.choices([0, 1, 2, 3], weights=[4, 72, 20, 4])[0])]
    yield from (admin for admin, _ in admins)
    yield from charges(rng, pid, eid, start, admins)


def visit_diagnoses(rng: random.Random, profile: str) -> list[tuple[str, str]]:
    if rng.random() < 0.3:
        return []  # nothing charted on the visit: the problem list or nothing at all
    choices = VISIT_DIAGNOSES[profile]
    return [choices[0] if profile == "b12" and rng.random() < 0.6 else rng.choice(choices)]


def pick_drug(rng: random.Random, profile: str) -> str:
    if profile == "b12":
        return rng.choices(["cyanocobalamin", "hydroxocobalamin", "methylcobalamin"], weights=[90, 5, 5])[0]
    if profile == "vaccine":
        return rng.choices(["influenza-vaccine", "pneumococcal-vaccine", "hepatitis-b-vaccine"], weights=[6, 3, 2])[0]
    return rng.choice(MIXED)


def administration(
    rng: random.Random, pid: str, eid: str, suffix: str, start: dt.datetime, profile: str,
    conditions: list[dict[str, Any]],
) -> tuple[dict[str, Any], Given]:
    key = pick_drug(rng, profile)
    codings, doses, usual = DRUGS[key]
    route = rng.choices([usual, "IV"], weights=[92, 8])[0] if "vaccine" not in key else usual
    admin: dict[str, Any] = {
        "resourceType": "MedicationAdministration", "id": f"ma-{suffix}",
        "status": rng.choices(["completed", "not-done", "entered-in-error", "in-progress"], weights=[92, 3, 3, 2])[0],
    }
    admin |= medication(rng, key, codings)
    admin["subject"] = ref("Patient", pid)
    if rng.random() < 0.95:
        admin["context"] = ref("Encounter", eid)
    admin |= effective(rng, start, infusion=route == "IV" and key == "ceftriaxone" and rng.random() < 0.5)
    if rng.random() < 0.92:
        admin["performer"] = [{"actor": {"reference": "Practitioner/prac-rn-0117", "display": "Dana Whitfield, RN"}}]
    if conditions and rng.random() < 0.4:
        admin["reasonReference"] = [ref("Condition", rng.choice(conditions)["id"])]
    if rng.random() < 0.03:
        admin["note"] = [{"text": "Patient brought own vial from home."}]
    dose = rng.choice(doses)
    admin["dosage"] = dosage(rng, key, route, dose)
    return admin, given(key, route, dose)


def medication(rng: random.Random, key: str, codings: list[tuple[str, str, str]] | None) -> dict[str, Any]:
    """How the admin names its drug: a coding, a Medication/<id> reference, a contained Medication, or text."""
    name = CATALOG[key]["display"]
    style = rng.choices(["code", "reference", "contained", "text"], weights=[75, 10, 5, 10])[0]
    if style == "reference" and key in MEDICATION_OF:
        return {"medicationReference": ref("Medication", MEDICATION_OF[key])}
    code = {"coding": [{"system": s, "code": c, "display": d} for s, c, d in rng.sample(codings, 1)], "text": name} \
        if codings and style != "text" else {"text": name}
    if style == "contained":
        return {"contained": [{"resourceType": "Medication", "id": "med", "code": code}],
                "medicationReference": {"reference": "#med"}}
    return {"medicationCodeableConcept": code}


def effective(rng: random.Random, start: dt.datetime, infusion: bool) -> dict[str, Any]:
    """In local time mostly; in UTC, date only, or on the wrong day now and then; a period for an infusion."""
    when = start + dt.timedelta(minutes=rng.choice([5, 10, 15, 25]))
    if infusion:
        return {"effectivePeriod": {"start": when.isoformat(), "end": (when + dt.timedelta(minutes=40)).isoformat()}}
    style = rng.choices(["local", "utc", "date", "next-day"], weights=[82, 12, 4, 2])[0]
    if style == "utc":
        return {"effectiveDateTime": when.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")}
    if style == "date":
        return {"effectiveDateTime": when.date().isoformat()}
    return {"effectiveDateTime": (when + dt.timedelta(days=1 if style == "next-day" else 0)).isoformat()}


def dosage(rng: random.Random, key: str, route: str, dose: float) -> dict[str, Any]:
    unit = BILLED[key][2]
    style = rng.choices(["coded", "v3", "text", "missing"], weights=[60, 20, 12, 8])[0]
    out: dict[str, Any] = {}
    if route == "IV":
        out["route"] = ROUTES["IV"]
    elif style != "missing":
        out["route"] = ROUTES[route if style == "coded" else f"{style}-{route}"]
    amount = rng.choices(["right", "missing", "high", "mg-for-mcg"], weights=[82, 7, 5, 6])[0]
    if amount == "missing":
        out["text"] = "given once"
        return out
    value, written = (dose * 2 if amount == "high" else dose), UNIT_WORDS[unit]
    if amount == "mg-for-mcg" and unit == "ug":
        value, unit, written = (1 if rng.random() < 0.5 else value), "mg", "mg"  # 1 mg is right; 1000 mg is not
    out["dose"] = {"value": value, "unit": written, "system": "http://unitsofmeasure.org", "code": unit}
    return out


def class_of(code: str) -> str:
    """A catalog drug without a class has its code's (config/default.yaml's billing lists)."""
    if code in BILLING["hormonal_antineoplastic_codes"]:
        return "antineoplastic-hormonal"
    return "antineoplastic-non-hormonal" if code.startswith("J9") else "other"


def given(key: str, route: str, dose: float) -> Given:
    """The lines a coder would capture, from the charted drug and dose."""
    drug = CATALOG[key]
    code, unit_size, _ = BILLED[key]
    units = math.ceil(dose / unit_size)
    drug_class = drug.get("class") or class_of(code)
    if route == "IV":
        admin_code = "96374"
    elif drug_class == "vaccine":
        admin_code = "90471"
    elif drug_class.startswith("antineoplastic"):
        admin_code = "96401" if drug_class == "antineoplastic-non-hormonal" else "96402"
    else:
        admin_code = "96372"
    return Given(route, admin_code, code, units)


def charges(
    rng: random.Random, pid: str, eid: str, start: dt.datetime, admins: list[tuple[dict[str, Any], Given]]
) -> Iterator[dict[str, Any]]:
    """What the clinic captured: nothing, the right lines, wrong units or code, an E/M, an orphan."""
    style = rng.choices(["none", "right", "units", "code", "em25", "em", "99211", "orphan", "error"],
                        weights=[40, 20, 9, 5, 8, 8, 5, 3, 2])[0]
    serial = iter(range(100))

    def charge(code: str, units: int = 1, on: str | None = None, status: str = "billable",
               modifiers: tuple[str, ...] = ()) -> dict[str, Any]:
        out: dict[str, Any] = {"resourceType": "ChargeItem", "id": f"ci-{eid[4:]}-{next(serial)}"}
        if modifiers:
            out["extension"] = [{"url": MODIFIER_URL, "valueCoding": {"system": CPT, "code": m}} for m in modifiers]
        out |= {"status": status, "code": {"coding": [{"system": CPT if code[0].isdigit() else HCPCS, "code": code}]},
                "subject": ref("Patient", pid), "context": ref("Encounter", eid),
                "occurrenceDateTime": start.date().isoformat(), "quantity": {"value": units}}
        return out | ({"service": [ref("MedicationAdministration", on)]} if on else {})

    if style in ("em25", "em"):
        yield charge("99213", modifiers=("25",) if style == "em25" else ())
    if style == "99211":
        yield charge("99211")
    if style == "orphan":
        yield from (charge("96372"), charge("J3420"))
    for admin, line in admins if style not in ("none", "orphan") else []:
        admin_code = {"IM": "96374", "IV": "96372"}.get(line.route) if style == "code" else line.admin_code
        units = line.units + rng.choice([1, 2]) if style == "units" and line.units else line.units
        if admin_code:
            yield charge(admin_code, 1, admin["id"], "entered-in-error" if style == "error" else "billable")
        if line.drug_code and units and admin["dosage"].get("dose"):
            yield charge(line.drug_code, units, admin["id"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a synthetic FHIR Bulk Data export of N encounters.")
    parser.add_argument("encounters", type=int, help="how many encounters (N)")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--gzip", action="store_true", help="write .ndjson.gz files")
    parser.add_argument("--split", type=int, default=1, help="files per resource type (K)")
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    files = Files(args.out_dir, args.split, args.gzip)
    written, index = 0, 0
    try:
        for med in MEDICATIONS:
            files.write(med)
        while written < args.encounters:
            rng = random.Random(f"{args.seed}:{index}")
            count = min(args.encounters - written, math.ceil(rng.triangular(1, 12, 2)))
            for resource in patient(rng, index, count):
                files.write(resource)
            written, index = written + count, index + 1
    finally:
        files.close()
    print(f"{args.out_dir}: {written} encounters of {index} patients", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
