"""Drug names in CMS's files (brand and generic names per NDC, short descriptions per code), matched in a
chart's free text ("Depo-Medrol 80 mg/mL", "ondansetron 4 mg IM").

A name is read as words, without the words that say form, route or amount. Each name is kept twice: as
written ("ondansetron hcl"), and without its salt ("ondansetron"), so a chart that leaves the salt out
still matches. A text matches the longest name it starts with (a drug is named before its diluent or the
site). A name shared by several codes gives them all, for the caller to choose among or not.
"""

from __future__ import annotations

import re

TOKEN = re.compile(r"[a-z][a-z0-9]*")
NOISE = frozenset({
    "inj", "injection", "injectable", "injections", "injectn", "solution", "soln", "sol", "susp", "suspension",
    "for", "of", "and", "the", "in", "per", "w", "with", "im", "iv", "sc", "sq", "subq", "subcut", "intramuscular",
    "intravenous", "subcutaneous", "vial", "vials", "mdv", "sdv", "pf", "preservative", "free", "pfs", "syringe",
    "syringes", "prefilled", "kit", "mg", "mcg", "ug", "ml", "g", "gm", "unit", "units", "u", "iu", "meq",
    "each", "ea", "dose", "doses", "powder", "lyophilized", "usp", "nos", "single", "multi", "use", "ampule",
    "ampul", "carpuject", "cartridge", "pen", "autoinjector", "auto", "injector", "infusion", "hr", "mo", "x",
    "implant", "implants", "extended", "release",
})
SALTS = frozenset({
    "hcl", "hydrochloride", "sodium", "sod", "na", "potassium", "sulfate", "phosphate", "phos", "acetate",
    "acet", "tromethamine", "mesylate", "citrate", "tartrate", "maleate", "succinate", "succ", "bromide",
    "chloride", "disodium", "dihydrate", "anhydrous", "monohydrate",
})
MIN_LETTERS = 4  # shorter names ("a", "ns") would match ordinary words


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
    """The name the text starts with (after words of form, route and amount), the longest; read as written
    and without salts. Only at the start: later words name diluents and sites ("Zofran 4 mg in sodium
    chloride", "... into the knee"), which must not be taken for the drug."""
    tokens = words(text)
    bare = [(at, w) for at, w in enumerate(tokens) if w not in SALTS]
    best: tuple[tuple[int, int], tuple[str, ...], tuple[tuple[str, int], ...]] | None = None
    for sequence in (list(enumerate(tokens)), bare):
        plain = tuple(w for _, w in sequence)
        for start, (at, first) in enumerate(sequence[:1]):
            for name, values in index.get(first, ()):
                if plain[start:start + len(name)] == name:
                    rank = (at, -len(name))
                    if best is None or rank < best[0]:
                        best = (rank, name, values)
                    break  # names are longest first: the first that fits here is the longest
    return None if best is None else (best[1], best[2])
