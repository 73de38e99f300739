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
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from cds_service.partb.model import FORMAT, Index, QuarterData

SHIPPED = Path(__file__).resolve().parent / "quarters"
SUFFIX = ".msgpack.gz"
INDEX_PREFIX = "index-"

class Header(msgspec.Struct):
    """Any stored file's format, read first: a file of another format would not decode as this one's."""

    format: int = 0


_header_decoder = msgspec.msgpack.Decoder(Header)
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
        data = gzip.decompress(path.read_bytes())
        found = _header_decoder.decode(data).format
        if found != FORMAT:
            raise StoredDataError(path, f"stored in format {found}; this version reads {FORMAT}: import the "
                                  "quarter's CMS files again (cds-service catalog import)")
        return decoder.decode(data)
    except OSError as exc:
        raise StoredDataError(path, f"cannot read: {exc.strerror or exc}") from None
    except (EOFError, ValueError, zlib.error, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise StoredDataError(path, f"not stored Part B data ({type(exc).__name__})") from None


def quarter_files(directories: list[Path]) -> dict[str, Path]:
    """The stored quarter files by quarter name, in order; a later directory's file replaces an earlier one's."""
    found: dict[str, Path] = {}
    for directory in directories:
        if directory.is_dir():
            for path in directory.glob(f"*{SUFFIX}"):
                if not path.name.startswith(INDEX_PREFIX):
                    found[path.name[: -len(SUFFIX)]] = path
    return dict(sorted(found.items()))


def inputs(files: Mapping[str, Path | bytes]) -> tuple[str, ...]:
    """'quarter:sha256' of each quarter file (or the bytes it will hold), in quarter order: what a merged
    index was built from."""
    out = []
    for quarter, found in sorted(files.items()):
        try:
            data = found if isinstance(found, bytes) else found.read_bytes()
        except OSError as exc:
            raise StoredDataError(Path(str(found)), f"cannot read: {exc.strerror or exc}") from None
        out.append(f"{quarter}:{hashlib.sha256(data).hexdigest()}")
    return tuple(out)


def index_name(of: tuple[str, ...]) -> str:
    digest = hashlib.sha256("\n".join(of).encode()).hexdigest()[:16]
    return f"{INDEX_PREFIX}{digest}{SUFFIX}"


def write_index(index: Index, directory: Path, keep_others: bool = False) -> Path:
    """Write the merged index beside the quarters; unless told to keep them, remove other sets' indexes."""
    target = write_atomically(directory / index_name(index.inputs), pack(index))
    if not keep_others:
        remove_other_indexes(directory, target)
    return target


def remove_other_indexes(directory: Path, kept: Path) -> None:
    for old in directory.glob(f"{INDEX_PREFIX}*{SUFFIX}"):
        if old != kept:
            old.unlink(missing_ok=True)


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
