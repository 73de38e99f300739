"""Units of dose and of billing: UCUM and the spellings charts and CMS's files use, and conversion between them."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from functools import lru_cache

from msgspec import Struct

# Mass in micrograms; other kinds by one canonical spelling each (UCUM where UCUM has one).
MASS_IN_UG = {
    "ug": Decimal(1), "mcg": Decimal(1), "µg": Decimal(1), "microgram": Decimal(1), "micrograms": Decimal(1),
    "mg": Decimal(1000), "milligram": Decimal(1000), "milligrams": Decimal(1000),
    "g": Decimal(1_000_000), "gm": Decimal(1_000_000), "gram": Decimal(1_000_000), "grams": Decimal(1_000_000),
}
VOLUME_UNITS = {"ml", "milliliter", "milliliters", "millilitre", "millilitres", "cc"}
ACTIVITY_UNITS = {"[iu]": "[iU]", "iu": "[iU]", "u": "U", "unit": "U", "units": "U", "[u]": "U", "usp unit": "U",
                  "usp units": "U", "meq": "meq", "[meq]": "meq"}
# A dose counted in items: one vial, one syringe, one dose ("{vial}" is UCUM's annotation form).
ITEM_UNITS = {"each", "ea", "{each}", "vial", "vials", "{vial}", "dose", "doses", "{dose}", "syringe", "syringes",
              "{syringe}", "unit dose", "kit", "{kit}", "implant", "{implant}", "1", "{count}", "pen", "{pen}"}
EACH = "each"

# CMS's billing-unit words ("HCPCS dosage"), by canonical unit.
CMS_UNIT_WORDS = {
    "MG": "mg", "MILLIGRAM": "mg", "MILLIGRAMS": "mg", "MCG": "ug", "UG": "ug", "MICROGRAM": "ug",
    "MICROGRAMS": "ug", "GM": "g", "G": "g", "GRAM": "g", "GRAMS": "g",
    "ML": "mL", "CC": "mL", "MILLILITER": "mL", "MILLILITERS": "mL",
    "UNIT": "U", "UNITS": "U", "U": "U", "USP UNIT": "U", "USP UNITS": "U", "IU": "[iU]", "IU VWF:RCO": "[iU]",
    "MEQ": "meq", "MMOL": "mmol", "SQ CM": "cm2", "CM2": "cm2",
    "EA": EACH, "EACH": EACH, "DOSE": EACH, "DOSES": EACH, "VIAL": EACH, "IMPLANT": EACH, "KIT": EACH,
    "MICROCURIE": "uCi", "MILLICURIE": "mCi", "MBQ": "MBq",
}
# Billing units that are counted, not measured: one per dose given.
PER_ITEM = re.compile(r"^(PER\b|LESS THAN\b|GREATER THAN\b)|DAYS OF THERAPY|\bCELLS\b|\bPFU\b|\bPER DOSE\b")
PER_UNIT = re.compile(r"PER (?:[A-Z0-9 ]+ )?(IU|UNITS?|MG|MCG)")  # "PER FACTOR VIII IU": one IU
AMOUNT = r"(\d[\d,]*(?:\.\d+)?|\.\d+)"
COMBINED = re.compile(rf"{AMOUNT}\s*([A-Z]+)\s*&\s*{AMOUNT}\s*([A-Z]+)")
SIMPLE = re.compile(rf"(?:UP TO\s+)?{AMOUNT}\s*([A-Z][A-Z :]*?)(?:\s*\(.*\))?")
LEADING = re.compile(rf"(?:UP TO\s+)?{AMOUNT}\s*([A-Z]+(?: [A-Z]+)?)")


class Dosage(Struct, frozen=True):
    """A billing unit as CMS writes it: an amount of a unit ('1000 MCG'), one per dose ('PER DOSE'), or
    neither (a combination such as '10 MG/5 MG', which no single dose divides)."""

    text: str
    value: Decimal | None = None
    unit: str | None = None  # canonical: ug, mg, g, mL, U, [iU], meq, cm2, each, ...
    problem: str | None = None  # why the text is not a billing unit at all

    @property
    def computable(self) -> bool:
        return self.value is not None and self.unit is not None


@lru_cache(maxsize=4096)
def parse_dosage(text: str) -> Dosage:
    """Read a CMS 'HCPCS dosage'; `problem` says why a text is not a billing unit."""
    words = " ".join(text.upper().replace("\xa0", " ").replace("I.U.", "IU").split())
    if not words:
        return Dosage(text, problem="empty")
    simple = SIMPLE.fullmatch(words)
    if simple and simple.group(2).strip() in CMS_UNIT_WORDS:
        value = number(simple.group(1))
        if not value:
            return Dosage(text, problem="the amount is zero")
        return Dosage(text, value, CMS_UNIT_WORDS[simple.group(2).strip()])
    combined = COMBINED.fullmatch(words)
    if combined and combined.group(2) == combined.group(4) and combined.group(2) in CMS_UNIT_WORDS:
        # "3 MG & 3 MG": one unit holds both (Celestone Soluspan's 3 mg acetate and 3 mg phosphate = 6 mg)
        total = (number(combined.group(1)) or Decimal(0)) + (number(combined.group(3)) or Decimal(0))
        return Dosage(text, total, CMS_UNIT_WORDS[combined.group(2)]) if total else Dosage(text, problem="zero")
    per_unit = PER_UNIT.fullmatch(words)
    if per_unit:
        return Dosage(text, Decimal(1), CMS_UNIT_WORDS[per_unit.group(1)])
    if PER_ITEM.search(words):
        return Dosage(text, Decimal(1), EACH)
    leading = LEADING.match(words)
    if leading and (leading.group(2) in CMS_UNIT_WORDS or leading.group(2).split()[0] in CMS_UNIT_WORDS
                    or leading.group(2).startswith("MILLION")):
        return Dosage(text)  # a combination or a range: valid, but no dose divides it
    if re.fullmatch(AMOUNT, words):
        return Dosage(text, problem="an amount with no unit")
    return Dosage(text, problem="not an amount with a known unit (such as '1 MG', '1000 MCG', '0.5 ML') or 'PER DOSE'")


def number(text: str) -> Decimal | None:
    try:
        return Decimal(text.replace(",", ""))
    except InvalidOperation:
        return None


def canonical(unit: str) -> str:
    """The canonical spelling of a dose unit as charted ('mcg' -> 'ug', 'cc' -> 'mL', '{vial}' -> 'each')."""
    key = unit.strip().lower()
    if key in MASS_IN_UG:
        return {Decimal(1): "ug", Decimal(1000): "mg", Decimal(1_000_000): "g"}[MASS_IN_UG[key]]
    if key in VOLUME_UNITS:
        return "mL"
    if key in ACTIVITY_UNITS:
        return ACTIVITY_UNITS[key]
    if key in ITEM_UNITS:
        return EACH
    return unit.strip()


def convert(value: Decimal, unit: str, target: str) -> Decimal | None:
    """Convert between mass units, or between spellings of one unit; None when they differ in kind."""
    unit, target_key = unit.strip().lower(), target.strip().lower()
    if unit in MASS_IN_UG and target_key in MASS_IN_UG:
        return value * MASS_IN_UG[unit] / MASS_IN_UG[target_key]
    if canonical(unit) == canonical(target):
        return value
    return None
