"""The configured drug catalog and payer profiles, indexed the way facts look them up."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from msgspec import Struct

from cds_service.partb import ndc
from cds_service.rules.coverage import icd10_key
from cds_service.rules.model import DrugClass, Frequency, PayerProfile, Quantity, RouteClass


class CuratedDrug(Struct, frozen=True):
    """A drug of the configured catalog: what CMS's files do not say (routes, usual maximum, class, the
    payer lists keyed by it), and the codes it bills under, the first in force on the date of service winning."""

    key: str
    display: str
    hcpcs: tuple[str, ...]
    billing_unit: Quantity | None  # for a code CMS does not list (J3490); else CMS's unit is used
    allowed_routes: frozenset[RouteClass]
    drug_class: DrugClass | None  # None: the class its code gives (chemotherapy J9000-J9999, vaccines)
    max_dose: Quantity | None = None
    vaccine_kind: str | None = None
    form: str | None = None  # "powder": CMS's package size is a vial, not mL, so a volume is not read through it


class Product(Struct, frozen=True):
    """A coded product of a curated drug: its concentration per mL and container, where known."""

    drug: CuratedDrug
    per_ml: Quantity | None = None
    container: str | None = None


def normalize_ndc(code: str) -> str:
    """The 11-digit 5-4-2 form of an NDC given as 4-4-2, 5-3-2, 5-4-1 or 11 digits; 9 digits for a
    labeler-product code ('70710-1663'); the digits of anything else."""
    forms = ndc.candidates(code)
    if forms:
        return forms[0]
    parts = code.strip().split("-")
    if len(parts) == 2 and all(p.isdigit() for p in parts):  # a product without its package: 9 digits
        return parts[0].zfill(5) + parts[1].zfill(4)
    return re.sub(r"\D", "", code)


def quantity(spec: Mapping[str, Any]) -> Quantity:
    return Quantity(Decimal(str(spec["value"])), spec["unit"])


def curated_of(key: str, spec: Mapping[str, Any]) -> CuratedDrug:
    codes = spec["hcpcs"]
    return CuratedDrug(
        key=key,
        display=spec["display"],
        hcpcs=tuple(codes) if isinstance(codes, list) else (codes,),
        billing_unit=quantity(spec["billing_unit"]) if "billing_unit" in spec else None,
        allowed_routes=frozenset(RouteClass(r) for r in spec["allowed_routes"]),
        drug_class=DrugClass(spec["class"]) if "class" in spec else None,
        max_dose=quantity(spec["max_dose"]) if "max_dose" in spec else None,
        vaccine_kind=spec.get("vaccine_kind"),
        form=spec.get("form"),
    )


class DrugCatalog:
    """The configured drugs, looked up by RxNorm, NDC, CVX or HCPCS code, or by a name in free text."""

    def __init__(self, drugs: Mapping[str, Mapping[str, Any]], unclassified: Iterable[str] = ()) -> None:
        self.drugs: dict[str, CuratedDrug] = {}
        self._products: dict[tuple[str, str], Product] = {}
        self._ndc_products: dict[str, Product] = {}  # by labeler + product (9 digits): package sizes vary
        self._by_code: dict[str, CuratedDrug] = {}
        hcpcs_owners: dict[str, set[str]] = {}
        names: list[tuple[str, CuratedDrug]] = []
        for key, spec in drugs.items():
            drug = curated_of(key, spec)
            self.drugs[key] = drug
            for code in drug.hcpcs:
                hcpcs_owners.setdefault(code, set()).add(key)
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
        no_drug = frozenset(unclassified)
        for code, owners in hcpcs_owners.items():
            if len(owners) == 1 and code not in no_drug:  # an unclassified code such as J3490 names no one drug
                self._by_code[code] = self.drugs[next(iter(owners))]
                self._products.setdefault(("hcpcs", code), Product(self._by_code[code]))
        # Longest names first, so "hydroxocobalamin" wins over a shorter shared word.
        self._names = [
            (re.compile(r"(?<![a-z0-9])" + re.escape(name) + r"(?![a-z0-9])"), drug)
            for name, drug in sorted(names, key=lambda item: -len(item[0]))
        ]

    @staticmethod
    def _key(system: str, code: str) -> str:
        return normalize_ndc(code) if system == "ndc" else code.strip()

    def product(self, system: str, code: str) -> Product | None:
        """Find the product for a coding; `system` is rxnorm, ndc, cvx or hcpcs (an NDC in 11-digit form)."""
        key = self._key(system, code)
        found = self._products.get((system, key))
        if found is None and system == "ndc" and len(key) == 11:
            found = self._ndc_products.get(key[:9])
        return found

    def has_ndc(self, ndc11: str) -> bool:
        return ("ndc", ndc11) in self._products or ndc11[:9] in self._ndc_products

    def by_code(self, code: str) -> CuratedDrug | None:
        """The one configured drug billed under a code (none for a code several share, such as J3490)."""
        return self._by_code.get(code)

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

