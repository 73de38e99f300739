"""The drug catalog from configuration, indexed by the codes that identify each drug."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from cds_service.rules.model import Drug, DrugClass, Quantity, RouteClass


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
    return re.sub(r"\D", "", code)


def quantity(spec: Mapping[str, Any]) -> Quantity:
    return Quantity(Decimal(str(spec["value"])), spec["unit"])


class DrugCatalog:
    """Look drugs up by RxNorm, NDC or HCPCS code."""

    def __init__(self, drugs: Mapping[str, Mapping[str, Any]]) -> None:
        self.drugs: dict[str, Drug] = {}
        self._products: dict[tuple[str, str], Product] = {}
        hcpcs_owners: dict[str, set[str]] = {}
        names: list[tuple[str, Drug]] = []
        for key, spec in drugs.items():
            drug = Drug(
                key=key,
                display=spec["display"],
                hcpcs=spec["hcpcs"],
                billing_unit=quantity(spec["billing_unit"]),
                allowed_routes=frozenset(RouteClass(r) for r in spec["allowed_routes"]),
                drug_class=DrugClass(spec["class"]),
                max_dose=quantity(spec["max_dose"]) if "max_dose" in spec else None,
            )
            self.drugs[key] = drug
            hcpcs_owners.setdefault(drug.hcpcs, set()).add(key)
            names += [(name.lower(), drug) for name in spec.get("names", [])]
            for code in spec["codes"]:
                product = Product(
                    drug,
                    per_ml=quantity(code["per_ml"]) if "per_ml" in code else None,
                    container=code.get("container"),
                )
                self._products[(code["system"], self._key(code["system"], code["code"]))] = product
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
        """Find the product for a coding; `system` is rxnorm, ndc or hcpcs."""
        return self._products.get((system, self._key(system, code)))

    def by_name(self, text: str) -> Product | None:
        """Find a drug named in free text ("B12 shot"); the product, and so its concentration, stays unknown."""
        lowered = text.lower()
        for pattern, drug in self._names:
            if pattern.search(lowered):
                return Product(drug)
        return None
