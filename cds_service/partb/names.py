"""Drug names in CMS's files (brand and generic names per NDC, short descriptions per code), matched in a
chart's free text ("Depo-Medrol 80 mg/mL", "ondansetron 4 mg IM").

A name is read as words, without the words that say form, route or amount. Each name is kept twice: as
written ("ondansetron hcl"), and without its salt ("ondansetron"), so a chart that leaves the salt out
still matches. A text matches the longest name it starts with (a drug is named before its diluent or the
site). A name shared by several codes gives them all, for the caller to choose among or not.
"""

from __future__ import annotations

import hashlib
import re

TOKEN = re.compile(r"[a-z][a-z0-9]*")
NOISE = frozenset({
    "inj", "injection", "injectable", "injections", "injectn", "solution", "soln", "sol", "susp", "suspension",
    "for", "of", "and", "the", "in", "per", "w", "with", "im", "iv", "sc", "sq", "subq", "subcut", "intramuscular",
    "intravenous", "subcutaneous", "vial", "vials", "mdv", "sdv", "pf", "preservative", "free", "pfs", "syringe",
    "syringes", "prefilled", "kit", "mg", "mcg", "ug", "ml", "g", "gm", "unit", "units", "u", "iu", "meq",
    "each", "ea", "dose", "doses", "powder", "lyophilized", "usp", "nos", "single", "multi", "use", "ampule",
    "ampul", "carpuject", "cartridge", "pen", "autoinjector", "auto", "injector", "infusion", "hr", "mo", "x",
    "implant", "implants", "extended", "release", "generic", "suspnsion",
})
SALTS = frozenset({
    "hcl", "hydrochloride", "sodium", "sod", "na", "potassium", "sulfate", "phosphate", "phos", "acetate",
    "acet", "tromethamine", "mesylate", "citrate", "tartrate", "maleate", "succinate", "succ", "bromide",
    "chloride", "disodium", "dihydrate", "anhydrous", "monohydrate",
})
MIN_LETTERS = 4  # shorter names ("a", "ns") would match ordinary words


def signature() -> str:
    """What the reading of names depends on: a merged index derived under other word lists is not used."""
    spec = "|".join([",".join(sorted(NOISE)), ",".join(sorted(SALTS)), str(MIN_LETTERS)])
    return "names:" + hashlib.sha256(spec.encode()).hexdigest()[:16]


def words(text: str) -> tuple[str, ...]:
    """The words of a name or a chart's text that name a drug: no form, route, amount or number."""
    return tuple(w for w in TOKEN.findall(text.lower()) if w not in NOISE)


def unsalted(tokens: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(w for w in tokens if w not in SALTS)


Index = dict[str, tuple[tuple[tuple[str, ...], tuple[tuple[str, int], ...]], ...]]


def variants(name: str) -> set[tuple[str, ...]]:
    """A name's words as written, and without its salt."""
    tokens = words(name)
    return {v for v in (tokens, unsalted(tokens)) if sum(len(w) for w in v) >= MIN_LETTERS}


def find(index: Index, text: str) -> tuple[tuple[str, ...], tuple[tuple[str, int], ...]] | None:
    """The longest name the text starts with (see find_all)."""
    return next(iter(find_all(index, text)), None)


def find_all(index: Index, text: str) -> list[tuple[tuple[str, ...], tuple[tuple[str, int], ...]]]:
    """The names the text starts with (after words of form, route and amount), longest first, read as written
    and without salts; then those its first parenthesis starts with ("Zofran (ondansetron) 4 mg": a brand,
    then the generic). Only at a start: later words name diluents and sites ("Zofran 4 mg in sodium
    chloride", "... into the knee"), which must not be taken for the drug."""
    found: list[tuple[tuple[str, ...], tuple[tuple[str, int], ...]]] = []
    starts = [text, text.split("(", 1)[1]] if "(" in text else [text]
    for part in starts:
        tokens = words(part)
        for sequence in (tokens, unsalted(tokens)):
            for name, values in index.get(sequence[0], ()) if sequence else ():
                if sequence[:len(name)] == name and all(name != seen for seen, _ in found):
                    found.append((name, values))
    return sorted(found, key=lambda item: -len(item[0]))  # stable: a longer name first, the text's own before
