"""Stage an export in an on-disk SQLite file keyed by patient, then hand out ranges of patients.

The file is scratch space: no journal, no fsync. The parent writes it once, in batches, and indexes it
by patient afterwards; workers open it read-only and read one range of patients each, in patient order.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from cds_service.audit.export import Line

SCHEMA = """
CREATE TABLE resources (patient TEXT NOT NULL, type TEXT NOT NULL, file INTEGER NOT NULL, line INTEGER NOT NULL,
                        body TEXT NOT NULL);
CREATE TABLE medications (id TEXT PRIMARY KEY, file INTEGER NOT NULL, line INTEGER NOT NULL, body TEXT NOT NULL);
"""
BATCH = 2000


@dataclass(frozen=True)
class Stored:
    """One staged line: where it came from and its JSON text."""

    resource_type: str
    file: int  # index into the job's list of files
    line: int
    body: str


class StagingWriter:
    """Write lines into a new staging file, BATCH rows per executemany."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = sqlite3.connect(path)
        self.conn.execute("PRAGMA journal_mode=OFF")
        self.conn.execute("PRAGMA synchronous=OFF")
        self.conn.executescript(SCHEMA)
        self.resources: list[tuple[str, str, int, int, str]] = []
        self.medications: list[tuple[str, int, int, str]] = []

    def add(self, line: Line, file: int, number: int) -> None:
        if line.resource_type == "Medication":
            self.medications.append((line.key, file, number, line.text))
        else:
            self.resources.append((line.key, line.resource_type, file, number, line.text))
        if len(self.resources) + len(self.medications) >= BATCH:
            self.flush()

    def flush(self) -> None:
        # The first Medication of an id wins, as files are read in name order.
        self.conn.executemany("INSERT OR IGNORE INTO medications VALUES (?, ?, ?, ?)", self.medications)
        self.conn.executemany("INSERT INTO resources VALUES (?, ?, ?, ?, ?)", self.resources)
        self.resources.clear()
        self.medications.clear()

    def finish(self) -> int:
        """Index by patient and close; return the number of Encounters staged."""
        self.flush()
        self.conn.execute("CREATE INDEX resources_by_patient ON resources (patient, file, line)")
        self.conn.commit()
        (count,) = self.conn.execute("SELECT count(*) FROM resources WHERE type = 'Encounter'").fetchone()
        self.close()
        return int(count)

    def close(self) -> None:
        self.conn.close()


class StagingReader:
    """Read one staging file, read-only: safe to share between processes."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True)

    def patient_count(self) -> int:
        (count,) = self.conn.execute("SELECT count(DISTINCT patient) FROM resources").fetchone()
        return int(count)

    def ranges(self, size: int) -> list[tuple[str, str]]:
        """Consecutive (first, last) patient ids, `size` patients a range, in patient order."""
        cursor = self.conn.execute("SELECT DISTINCT patient FROM resources ORDER BY patient")
        out = []
        while batch := cursor.fetchmany(size):
            out.append((batch[0][0], batch[-1][0]))
        return out

    def patients(self, first: str, last: str) -> Iterator[tuple[str, list[Stored]]]:
        """Each patient of a range with its staged lines, in file and line order."""
        cursor = self.conn.execute(
            "SELECT patient, type, file, line, body FROM resources WHERE patient BETWEEN ? AND ?"
            " ORDER BY patient, file, line",
            (first, last),
        )
        for patient, rows in itertools.groupby(cursor, key=lambda row: row[0]):
            yield patient, [Stored(rtype, file, line, body) for _, rtype, file, line, body in rows]

    def medication(self, medication_id: str) -> Stored | None:
        row = self.conn.execute("SELECT file, line, body FROM medications WHERE id = ?", (medication_id,)).fetchone()
        return Stored("Medication", row[0], row[1], row[2]) if row else None

    def close(self) -> None:
        self.conn.close()
