"""MXNet RecordIO (.rec + .idx) without MXNet, byte-compatible with dmlc-core and im2rec.

A record is ``uint32 magic 0xced7230a``, ``uint32 lrec``, the payload, zero padding to 4 bytes
(all little endian). dmlc-core's current ``recordio.h`` packs ``lrec = (cflag << 29) | length``
(29-bit length, 3-bit flag); the often-quoted ``<< 30`` is from its 2015 version with another magic
number, and only differs for split records, which real files use, so we follow the code. When the
magic occurs in the payload at a 4-aligned offset the writer ends a chunk there (cflag 1 = first,
2 = middle, 3 = last; 0 = unsplit) and drops the magic; the reader puts it back between chunks.

An image payload is MXNet's ``IRHeader`` (``struct 'IfQQ'``: uint32 flag, float32 label, uint64
id, uint64 id2), then ``flag`` float32 labels when flag > 0, then the encoded image.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from tfic.errors import InvalidDataset, NotFound
from trainer_svc.data.classnames import find_class_names, resolve_class_names, validate_class_names
from trainer_svc.data.labels import class_ids, from_multi_hot, resolve_format
from trainer_svc.data.source import DataSource, Sample

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
_LENGTH_BITS = 29
MAX_CHUNK = (1 << _LENGTH_BITS) - 1
_HEAD = struct.Struct("<II")
_IR = struct.Struct("<IfQQ")


def encode_record(payload: bytes) -> bytes:
    """The on-disk bytes of one record, split at aligned occurrences of the magic as dmlc-core does."""
    if len(payload) > MAX_CHUNK:
        raise InvalidDataset(f"record of {len(payload)} bytes is too large; RecordIO records are < 2^29 bytes")
    out = bytearray()
    start = 0
    pos = payload.find(MAGIC_BYTES)
    while pos != -1 and pos + 4 <= len(payload):
        if pos % 4 == 0:
            out += _HEAD.pack(MAGIC, ((1 if start == 0 else 2) << _LENGTH_BITS) | (pos - start))
            out += payload[start:pos]
            start = pos + 4
            pos = payload.find(MAGIC_BYTES, start)
        else:
            pos = payload.find(MAGIC_BYTES, pos + 1)
    out += _HEAD.pack(MAGIC, ((3 if start else 0) << _LENGTH_BITS) | (len(payload) - start))
    out += payload[start:]
    out += b"\0" * (-len(payload) % 4)
    return bytes(out)


class RecordIOWriter:
    """Appends records to ``rec_path``; with ``write_idx`` also writes ``key<TAB>offset`` lines to the .idx."""

    def __init__(self, rec_path: str | os.PathLike[str], write_idx: bool = True) -> None:
        self.rec_path = Path(rec_path)
        self.idx_path = self.rec_path.with_suffix(".idx") if write_idx else None
        self._rec = open(self.rec_path, "wb")  # noqa: SIM115 - closed by close()/__exit__
        self._idx = open(self.idx_path, "w", encoding="ascii") if self.idx_path else None  # noqa: SIM115
        self._count = 0

    def write(self, payload: bytes, key: int | None = None) -> int:
        """Write one record; returns its byte offset. ``key`` defaults to a running count."""
        offset = self._rec.tell()
        self._rec.write(encode_record(payload))
        if self._idx is not None:
            self._idx.write(f"{self._count if key is None else key}\t{offset}\n")
        self._count += 1
        return offset

    def close(self) -> None:
        self._rec.close()
        if self._idx is not None:
            self._idx.close()

    def __enter__(self) -> RecordIOWriter:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()


def read_record_at(f: BinaryIO, offset: int, name: str) -> tuple[bytes, int]:
    """The payload of the record starting at ``offset`` and the offset just after it."""
    f.seek(offset)
    parts: list[bytes] = []
    pos = offset
    while True:
        head = f.read(8)
        if len(head) < 8:
            raise InvalidDataset(
                f"{name}: truncated record at byte offset {offset}: the file ends inside a record header"
                f" at offset {pos}"
            )
        magic, lrec = _HEAD.unpack(head)
        if magic != MAGIC:
            raise InvalidDataset(
                f"{name}: bad magic number at byte offset {pos}: expected 0x{MAGIC:08x} (bytes {MAGIC_BYTES.hex()}), "
                f"found bytes {head[:4].hex()}; the file may not be MXNet RecordIO, or it is corrupt"
            )
        cflag, length = lrec >> _LENGTH_BITS, lrec & MAX_CHUNK
        first = not parts
        if cflag > 3 or (first and cflag not in (0, 1)) or (not first and cflag not in (2, 3)):
            expected = "0 (whole) or 1 (first part)" if first else "2 (middle part) or 3 (last part)"
            raise InvalidDataset(
                f"{name}: bad continuation flag {cflag} at byte offset {pos} (record starting at {offset}); "
                f"expected {expected}"
            )
        padded = (length + 3) & ~3
        data = f.read(padded)
        if len(data) < padded:
            raise InvalidDataset(
                f"{name}: truncated record at byte offset {offset}: a {length}-byte chunk at offset {pos} "
                f"has only {len(data)} bytes before the end of the file"
            )
        parts.append(data[:length])
        pos += 8 + padded
        if cflag in (0, 3):
            return b"".join(parts), pos
        parts.append(MAGIC_BYTES)


def iter_records(path: str | os.PathLike[str]) -> Iterator[tuple[int, bytes]]:
    """(offset, payload) for every record, scanning from the start."""
    rec = Path(path)
    size = _check_rec(rec)
    with open(rec, "rb") as f:
        offset = 0
        while offset < size:
            payload, offset_next = read_record_at(f, offset, str(rec))
            yield offset, payload
            offset = offset_next


def read_record(path: str | os.PathLike[str], offset: int) -> bytes:
    with open(path, "rb") as f:
        return read_record_at(f, offset, str(path))[0]


def _check_rec(rec: Path) -> int:
    if not rec.is_file():
        raise NotFound(f"record file {rec} does not exist")
    size = rec.stat().st_size
    if size == 0:
        raise InvalidDataset(f"{rec} is empty (0 bytes); expected MXNet RecordIO records")
    return size


@dataclass(frozen=True)
class IRHeader:
    """MXNet's image record header. ``labels`` holds the ``flag`` extra labels (empty when flag is 0)."""

    flag: int
    label: float
    id: int
    id2: int
    labels: tuple[float, ...] = ()

    @property
    def all_labels(self) -> tuple[float, ...]:
        return self.labels if self.flag > 0 else (self.label,)


def pack_image(image: bytes, label: float | Sequence[float], id: int = 0, id2: int = 0) -> bytes:
    """Like ``mx.recordio.pack``: a number is stored in the header, a sequence after it (flag = its length)."""
    if not isinstance(label, Sequence):
        return _IR.pack(0, float(label), id, id2) + image
    values = [float(v) for v in label]
    return _IR.pack(len(values), 0.0, id, id2) + struct.pack(f"<{len(values)}f", *values) + image


def unpack_image(payload: bytes, where: str = "record") -> tuple[IRHeader, bytes]:
    if len(payload) < _IR.size:
        raise InvalidDataset(
            f"{where}: payload is {len(payload)} bytes, shorter than the {_IR.size}-byte image record header"
        )
    flag, label, rid, rid2 = _IR.unpack_from(payload)
    end = _IR.size + 4 * flag
    if end > len(payload):
        raise InvalidDataset(
            f"{where}: header says {flag} labels follow, but the payload has only {len(payload) - _IR.size} bytes "
            "after the header; this may not be an image record"
        )
    labels = struct.unpack_from(f"<{flag}f", payload, _IR.size) if flag else ()
    return IRHeader(flag, label, rid, rid2, tuple(labels)), payload[end:]


def read_idx(path: str | os.PathLike[str], rec_size: int) -> list[tuple[str, int]]:
    """``(key, offset)`` pairs of an .idx file, checked against the .rec's size."""
    idx = Path(path)
    entries: list[tuple[str, int]] = []
    with idx.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            cols = line.rstrip("\r\n").split("\t")
            offset_text = cols[-1].strip()
            if len(cols) != 2 or not offset_text.isdigit():
                raise InvalidDataset(f"{idx}, line {lineno}: expected 'key<TAB>byte offset', found {line.strip()!r}")
            offset = int(offset_text)
            if offset % 4 or offset >= rec_size:
                raise InvalidDataset(
                    f"{idx}, line {lineno}: offset {offset} cannot start a record in a {rec_size}-byte .rec; "
                    "the .idx may be stale (delete it to scan the .rec instead)"
                )
            entries.append((cols[0].strip(), offset))
    return entries


@dataclass
class RecordSource(DataSource):
    """Samples are records of one .rec; ``read`` opens the file per call so threads can share the source."""

    rec_path: Path = Path()

    def read(self, sample: Sample) -> bytes:
        payload = read_record(self.rec_path, sample.offset)
        return unpack_image(payload, f"{self.rec_path} record {sample.key}")[1]


def read_rec(
    path: str | os.PathLike[str],
    *,
    class_names: Sequence[str] | None = None,
    check_classes: bool = True,
    label_format: str = "class-id",
) -> RecordSource:
    """Read labels from every record (via the .idx when there is one, else by scanning).

    Image bytes are not kept: :meth:`RecordSource.read` reads a record again at its offset.
    ``label_format``: how a record's labels read (:mod:`trainer_svc.data.labels`); im2rec's
    ``--pack-label`` stores a .lst's label columns, so a multi-hot list makes multi-hot records.
    """
    rec = Path(path)
    size = _check_rec(rec)
    names: tuple[str, ...] | None = None
    if class_names is not None:
        names = validate_class_names(class_names, "class names")
    elif (found := find_class_names(rec.parent)) is not None:
        names = found[0]
    idx = rec.with_suffix(".idx")
    raw: list[tuple[Sample, str, tuple[float, ...]]] = []  # labels still the record's values
    samples: list[Sample] = []
    with open(rec, "rb") as f:
        if idx.is_file():
            for key, offset in read_idx(idx, size):
                try:
                    payload = read_record_at(f, offset, str(rec))[0]
                except InvalidDataset as exc:
                    raise InvalidDataset(f"{exc} (reached via {idx} key {key}; the .idx may be stale)") from None
                raw.append(_raw_sample(rec, key, offset, payload))
        else:
            offset = 0
            while offset < size:
                payload, next_offset = read_record_at(f, offset, str(rec))
                raw.append(_raw_sample(rec, None, offset, payload))
                offset = next_offset
    fmt = resolve_format(label_format, [values for _, _, values in raw], len(names) if names else None)
    width = len(raw[0][2]) if fmt == "multi-hot" and raw else None
    for sample, where, values in raw:
        if width is not None:
            labels = from_multi_hot(values, where, width)
        else:
            labels = class_ids(values, where)
            if names is not None and max(labels) >= len(names):
                raise InvalidDataset(f"{where}: label {max(labels)} is out of range; there are {len(names)} classes")
        samples.append(Sample(key=sample.key, labels=labels, offset=sample.offset))
    if names is None and width is not None:
        names = tuple(str(i) for i in range(width))
    used = {label for s in samples for label in s.labels}
    resolved = resolve_class_names(used, names, str(rec), check_classes)
    return RecordSource(
        rec_path=rec,
        samples=samples,
        class_names=resolved,
        description=f"RecordIO {rec}: {len(samples)} images in {len(resolved)} classes",
        multi_label=width is not None or any(len(s.labels) > 1 for s in samples),
    )


def _raw_sample(rec: Path, key: str | None, offset: int, payload: bytes) -> tuple[Sample, str, tuple[float, ...]]:
    header, _ = unpack_image(payload, f"{rec} record at byte offset {offset}")
    ident = key if key is not None else str(header.id)
    where = f"{rec} record {ident} at byte offset {offset}"
    return Sample(key=f"{rec.name}#{ident}@{offset}", labels=(), offset=offset), where, header.all_labels
