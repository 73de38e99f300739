"""CMS's quarterly Medicare Part B drug files: which code an NDC bills under, its billing unit and
Medicare's payment limit, quarter by quarter (see BILLING-FACTS, "Where codes and units come from")."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from cds_service.partb import build, names, stored
from cds_service.partb.index import PartB, Pick
from cds_service.partb.model import Code, Package, Quarter, QuarterData, quarter_label

__all__ = ["Code", "Package", "PartB", "Pick", "Quarter", "QuarterData", "directories", "load", "quarter_label"]

log = logging.getLogger("cds_service.partb")
_loaded: dict[tuple[str, ...], PartB] = {}
_lock = threading.Lock()


def directories(imported: Path | None) -> list[Path]:
    """Where stored quarters are read from: the shipped ones, then the imported ones, which win."""
    return [stored.SHIPPED, *([imported] if imported is not None else [])]


def load(imported: Path | None) -> PartB:
    """The shipped and imported quarters. The same quarter files give the same PartB object, so a reload
    that changes nothing else keeps it, and each gunicorn worker shares what the master loaded."""
    dirs = directories(imported)
    files = stored.quarter_files(dirs)
    of = (*stored.inputs(files), names.signature())  # an index derived under other name rules is not used
    with _lock:
        found = _loaded.get(of)
        if found is not None:
            return found
        index = stored.find_index(dirs, of)
        if index is None:  # quarters copied in by hand, or an import cut short: derive it here, slowly
            log.warning("no merged index for the stored Part B quarters; deriving it (run `cds-service catalog "
                        "import` to store one)")
            index = build.index([stored.read_quarter(path) for path in files.values()], of)
        found = PartB(index)
        if len(_loaded) >= 4:  # the last few: each reload that changes the quarters makes a new one
            _loaded.pop(next(iter(_loaded)))
        _loaded[of] = found
        return found
