"""Stored quarters and the merged index, as files.

- One gzipped MessagePack file per quarter (`2025q3.msgpack.gz`): the rows of CMS's two files, checked.
  The nine quarters from 2024 Q1 to 2026 Q1 ship in `quarters/` beside this module, so a fresh clone has
  them; `cds-service catalog import` writes further quarters to the configured directory, where a quarter
  replaces a shipped one of the same name (CMS re-issues files with corrections).
- One merged index (`index-<inputs>.msgpack.gz`) per set of quarters, named by a hash of the quarter files
  it merged, so a stale one is never read. Start-up decodes it (about 40 ms) instead of deriving it from
  the quarters (about 0.3 s); the quarter files are read only to hash them.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import msgspec

from cds_service.partb.model import FORMAT, Index, QuarterData

SHIPPED = Path(__file__).resolve().parent / "quarters"
SUFFIX = ".msgpack.gz"
INDEX_PREFIX = "index-"

_quarter_decoder = msgspec.msgpack.Decoder(QuarterData)
_index_decoder = msgspec.msgpack.Decoder(Index)
_encoder = msgspec.msgpack.Encoder()


class StoredDataError(Exception):
    def __init__(self, path: Path, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(f"{path}: {reason}")


def write_atomically(path: Path, data: bytes) -> Path:
    """Write a file so that a reader sees the old one or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def pack(value: object) -> bytes:
    return gzip.compress(_encoder.encode(value), compresslevel=9, mtime=0)


def write_quarter(quarter: QuarterData, directory: Path) -> Path:
    return write_atomically(directory / f"{quarter.quarter}{SUFFIX}", pack(quarter))


def read_quarter(path: Path) -> QuarterData:
    quarter: QuarterData = unpack(path, _quarter_decoder)
    return quarter


def unpack(path: Path, decoder: msgspec.msgpack.Decoder[Any]) -> Any:
    try:
        value = decoder.decode(gzip.decompress(path.read_bytes()))
    except OSError as exc:
        raise StoredDataError(path, f"cannot read: {exc.strerror or exc}") from None
    except (EOFError, gzip.BadGzipFile, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise StoredDataError(path, f"not stored Part B data ({type(exc).__name__})") from None
    if value.format != FORMAT:
        raise StoredDataError(path, f"stored in format {value.format}; this version reads {FORMAT}")
    return value


def quarter_files(directories: list[Path]) -> dict[str, Path]:
    """The stored quarter files by quarter name, in order; a later directory's file replaces an earlier one's."""
    found: dict[str, Path] = {}
    for directory in directories:
        if directory.is_dir():
            for path in directory.glob(f"*{SUFFIX}"):
                if not path.name.startswith(INDEX_PREFIX):
                    found[path.name[: -len(SUFFIX)]] = path
    return dict(sorted(found.items()))


def inputs(files: dict[str, Path]) -> tuple[str, ...]:
    """'quarter:sha256' of each quarter file: what a merged index was built from."""
    out = []
    for quarter, path in files.items():
        try:
            out.append(f"{quarter}:{hashlib.sha256(path.read_bytes()).hexdigest()}")
        except OSError as exc:
            raise StoredDataError(path, f"cannot read: {exc.strerror or exc}") from None
    return tuple(out)


def index_name(of: tuple[str, ...]) -> str:
    digest = hashlib.sha256("\n".join(of).encode()).hexdigest()[:16]
    return f"{INDEX_PREFIX}{digest}{SUFFIX}"


def write_index(index: Index, directory: Path) -> Path:
    """Write the merged index beside the quarters, and remove indexes of other sets of quarters."""
    target = write_atomically(directory / index_name(index.inputs), pack(index))
    for old in directory.glob(f"{INDEX_PREFIX}*{SUFFIX}"):
        if old != target:
            old.unlink(missing_ok=True)
    return target


def find_index(directories: list[Path], of: tuple[str, ...]) -> Index | None:
    """The merged index of exactly these quarter files, if one is stored (the last directory first)."""
    name = index_name(of)
    for directory in reversed(directories):
        path = directory / name
        if path.is_file():
            index: Index = unpack(path, _index_decoder)
            if index.inputs == of:
                return index
    return None


def signature(directories: list[Path]) -> tuple[tuple[str, int, int], ...]:
    """Names, sizes and mtimes of the stored files: whether they changed since the last look, cheaply."""
    out = []
    for directory in directories:
        if directory.is_dir():
            for path in sorted(directory.glob(f"*{SUFFIX}")):
                try:
                    stat = path.stat()
                except OSError:
                    continue
                out.append((str(path), stat.st_size, stat.st_mtime_ns))
    return tuple(out)
