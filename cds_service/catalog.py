"""The drug catalog and payer profiles from configuration, indexed the way facts look them up."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from cds_service.rules.coverage import icd10_key
from cds_service.rules.model import Drug, DrugClass, Frequency, PayerProfile, Quantity, RouteClass

# Mass units in micrograms, and activity units by their canonical UCUM spelling.
MASS_IN_UG = {
    "ug": Decimal(1), "mcg": Decimal(1), "µg": Decimal(1), "microgram": Decimal(1), "micrograms": Decimal(1),
    "mg": Decimal(1000), "milligram": Decimal(1000), "milligrams": Decimal(1000),
    "g": Decimal(1_000_000), "gram": Decimal(1_000_000), "grams": Decimal(1_000_000),
}
VOLUME_UNITS = {"ml", "milliliter", "milliliters", "millilitre", "millilitres", "cc"}
ACTIVITY_UNITS = {"[iu]": "[iU]", "iu": "[iU]", "u": "U", "unit": "U", "units": "U", "[u]": "U"}


def convert(value: Decimal, unit: str, target: str) -> Decimal | None:
    """Convert between mass units, or between spellings of one activity unit; None when they differ in kind."""
    unit, target_key = unit.strip().lower(), target.strip().lower()
    if target_key in VOLUME_UNITS and unit in VOLUME_UNITS:
        return value
    if unit in MASS_IN_UG and target_key in MASS_IN_UG:
        return value * MASS_IN_UG[unit] / MASS_IN_UG[target_key]
    if unit in ACTIVITY_UNITS and ACTIVITY_UNITS[unit] == ACTIVITY_UNITS.get(target_key, target):
        return value
    return None


@dataclass(frozen=True)
class Product:
    """A coded product of a drug: its concentration per mL and container, where known."""

    drug: Drug
    per_ml: Quantity | None = None
    container: str | None = None


def normalize_ndc(code: str) -> str:
    """Return the 11-digit 5-4-2 form of an NDC given as 4-4-2, 5-3-2, 5-4-1 or 11 digits."""
    code = code.strip()
    parts = code.split("-")
    if len(parts) == 3 and all(p.isdigit() for p in parts):
        labeler, product, package = parts
        return labeler.zfill(5) + product.zfill(4) + package.zfill(2)
    if len(parts) == 2 and all(p.isdigit() for p in parts):  # a product without its package: 9 digits
        return parts[0].zfill(5) + parts[1].zfill(4)
    return re.sub(r"\D", "", code)


def quantity(spec: Mapping[str, Any]) -> Quantity:
    return Quantity(Decimal(str(spec["value"])), spec["unit"])


def drug_of(key: str, spec: Mapping[str, Any]) -> Drug:
    billing_unit = quantity(spec["billing_unit"])
    max_dose = None
    if "max_dose" in spec:
        limit = quantity(spec["max_dose"])
        max_dose = convert(limit.value, limit.unit, billing_unit.unit)
    return Drug(
        key=key,
        display=spec["display"],
        hcpcs=spec["hcpcs"],
        billing_unit=billing_unit,
        allowed_routes=frozenset(RouteClass(r) for r in spec["allowed_routes"]),
        drug_class=DrugClass(spec["class"]),
        max_dose=max_dose,
        vaccine_kind=spec.get("vaccine_kind"),
    )


class DrugCatalog:
    """Look drugs up by RxNorm, NDC, CVX or HCPCS code, or by a name in free text."""

    def __init__(self, drugs: Mapping[str, Mapping[str, Any]]) -> None:
        self.drugs: dict[str, Drug] = {}
        self._products: dict[tuple[str, str], Product] = {}
        self._ndc_products: dict[str, Product] = {}  # by labeler + product (9 digits): package sizes vary
        hcpcs_owners: dict[str, set[str]] = {}
        names: list[tuple[str, Drug]] = []
        for key, spec in drugs.items():
            drug = drug_of(key, spec)
            self.drugs[key] = drug
            hcpcs_owners.setdefault(drug.hcpcs, set()).add(key)
            names += [(name.lower(), drug) for name in spec.get("names", [])]
            for code in spec["codes"]:
                product = Product(
                    drug,
                    per_ml=quantity(code["per_ml"]) if "per_ml" in code else None,
                    container=code.get("container"),
                )
                normalized = self._key(code["system"], code["code"])
                if code["system"] == "ndc":
                    self._ndc_products.setdefault(normalized[:9], product)
                    if len(normalized) == 9:
                        continue
                self._products[(code["system"], normalized)] = product
        for code, owners in hcpcs_owners.items():
            if len(owners) == 1:  # an unclassified code such as J3490 names no one drug
                self._products.setdefault(("hcpcs", code), Product(self.drugs[next(iter(owners))]))
        # Longest names first, so "hydroxocobalamin" wins over a shorter shared word.
        self._names = [
            (re.compile(r"(?<![a-z0-9])" + re.escape(name) + r"(?![a-z0-9])"), drug)
            for name, drug in sorted(names, key=lambda item: -len(item[0]))
        ]

    @staticmethod
    def _key(system: str, code: str) -> str:
        return normalize_ndc(code) if system == "ndc" else code.strip()

    def product(self, system: str, code: str) -> Product | None:
        """Find the product for a coding; `system` is rxnorm, ndc, cvx or hcpcs."""
        key = self._key(system, code)
        found = self._products.get((system, key))
        if found is None and system == "ndc" and len(key) == 11:
            found = self._ndc_products.get(key[:9])
        return found

    def by_name(self, text: str) -> Product | None:
        """Find a drug named in free text ("B12 shot"); the product, and so its concentration, stays unknown."""
        lowered = text.lower()
        for pattern, drug in self._names:
            if pattern.search(lowered):
                return Product(drug)
        return None


@dataclass(frozen=True)
class PayerMatch:
    profile: PayerProfile
    payment_typology: frozenset[str]
    payor_names: tuple[str, ...]


class PayerProfiles:
    """Select the payer profile for a coverage: by Source of Payment Typology code, then by payor name."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.matches = [
            PayerMatch(
                profile_of(key, p),
                frozenset(p.get("match", {}).get("payment_typology", [])),
                tuple(n.lower() for n in p.get("match", {}).get("payor_names", [])),
            )
            for key, p in spec["profiles"].items()
        ]
        self.default = next(m.profile for m in self.matches if m.profile.key == spec["default"])

    def select(self, typology_codes: Iterable[str], payor_names: Iterable[str]) -> PayerProfile:
        codes = set(typology_codes)
        for match in self.matches:
            if codes & match.payment_typology:
                return match.profile
        names = [n.lower() for n in payor_names]
        for match in self.matches:
            if any(wanted in name for wanted in match.payor_names for name in names):
                return match.profile
        return self.default


def profile_of(key: str, spec: Mapping[str, Any]) -> PayerProfile:
    return PayerProfile(
        key=key,
        display=spec["display"],
        waste_modifiers=spec.get("waste_modifiers", False),
        medicare_vaccine_codes=spec.get("medicare_vaccine_codes", False),
        multiple_injection_modifier=spec.get("multiple_injection_modifier"),
        self_administered=frozenset(spec.get("self_administered_drugs", [])),
        covered_diagnoses={
            drug: tuple(icd10_key(code) for code in codes) for drug, codes in spec.get("covered_diagnoses", {}).items()
        },
        frequency={
            drug: Frequency(
                min_interval_days=f["min_interval_days"],
                loading_max_doses=f.get("loading_max_doses", 0),
                loading_window_days=f.get("loading_window_days", 0),
            )
            for drug, f in spec.get("frequency", {}).items()
        },
    )

