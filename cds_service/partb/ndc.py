"""NDCs as charts write them: 10 digits in 4-4-2, 5-3-2 or 5-4-1 form, or CMS's 11-digit 5-4-2, with or
without hyphens. The 11-digit form pads the short segment with a zero; an unhyphenated 10-digit NDC could
be any of the three, so all three 11-digit readings are candidates."""

from __future__ import annotations

import re

SEGMENTS = {(4, 4, 2): 0, (5, 3, 2): 1, (5, 4, 1): 2, (5, 4, 2): None}  # which segment is padded


def candidates(text: str) -> tuple[str, ...]:
    """The 11-digit forms an NDC can stand for, most likely first; () for what is not an NDC."""
    code = re.sub(r"\s", "", text).removeprefix("NDC").removeprefix("ndc").lstrip(":")
    if "-" in code:
        parts = code.split("-")
        shape = tuple(len(p) for p in parts)
        if len(parts) != 3 or not all(p.isdigit() for p in parts) or shape not in SEGMENTS:
            return ()
        padded = SEGMENTS[shape]
        if padded is not None:
            parts[padded] = "0" + parts[padded]
        return ("".join(parts),)
    if not code.isdigit():
        return ()
    if len(code) == 11:
        return (code,)
    if len(code) == 10:
        return ("0" + code, code[:5] + "0" + code[5:], code[:9] + "0" + code[9:])
    return ()


def hyphenated(ndc11: str) -> str:
    """'00009028002' -> '00009-0280-02'."""
    return f"{ndc11[:5]}-{ndc11[5:9]}-{ndc11[9:]}"
