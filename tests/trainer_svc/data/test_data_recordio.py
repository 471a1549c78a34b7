from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from tfic.errors import InvalidDataset, NotFound
from tfic.imaging import check_decodable
from trainer_svc.data.recordio import (
    MAGIC,
    MAGIC_BYTES,
    RecordIOWriter,
    encode_record,
    iter_records,
    pack_image,
    read_rec,
    read_record,
    unpack_image,
)

M = MAGIC_BYTES


def _chunks(raw: bytes) -> list[tuple[int, bytes]]:
    """(cflag, data) of each chunk, parsed independently of the reader under test."""
    out = []
    pos = 0
    while pos < len(raw):
        magic, lrec = struct.unpack_from("<II", raw, pos)
        assert magic == MAGIC
        length = lrec & ((1 << 29) - 1)
        out.append((lrec >> 29, raw[pos + 8 : pos + 8 + length]))
        pos += 8 + (length + 3) // 4 * 4
    return out


def test_whole_record_layout() -> None:
    raw = encode_record(b"abcde")
    assert raw == M + struct.pack("<I", 5) + b"abcde\0\0\0"
    assert encode_record(b"") == M + b"\0\0\0\0"


@pytest.mark.parametrize(
    ("payload", "chunks"),
    [
        (b"abcd" + M + b"efgh", [(1, b"abcd"), (3, b"efgh")]),
        (M + b"xyz", [(1, b""), (3, b"xyz")]),
        (b"abcd" + M, [(1, b"abcd"), (3, b"")]),
        (b"abcd" + M + b"1234" + M + b"tail!", [(1, b"abcd"), (2, b"1234"), (3, b"tail!")]),
        (M + M, [(1, b""), (2, b""), (3, b"")]),
        (b"ab" + M + b"cd", [(0, b"ab" + M + b"cd")]),  # unaligned: not split
        (b"abcd" + M[:3], [(0, b"abcd" + M[:3])]),
    ],
)
def test_magic_in_payload_is_split_like_dmlc_and_round_trips(
    tmp_path: Path, payload: bytes, chunks: list[tuple[int, bytes]]
) -> None:
    raw = encode_record(payload)
    assert _chunks(raw) == chunks
    path = tmp_path / "x.rec"
    path.write_bytes(raw + encode_record(b"next"))
    assert [p for _, p in iter_records(path)] == [payload, b"next"]
    assert read_record(path, len(raw)) == b"next"


def test_pack_and_unpack_match_mxnet_irheader() -> None:
    packed = pack_image(b"IMG", 3.0, id=7, id2=9)
    assert packed == struct.pack("<IfQQ", 0, 3.0, 7, 9) + b"IMG"
    header, image = unpack_image(packed)
    assert (header.flag, header.label, header.id, header.id2, header.all_labels, image) == (
        0,
        3.0,
        7,
        9,
        (3.0,),
        b"IMG",
    )

    multi = pack_image(b"IMG", [1, 4], id=2)
    assert multi == struct.pack("<IfQQ", 2, 0.0, 2, 0) + struct.pack("<2f", 1.0, 4.0) + b"IMG"
    header, image = unpack_image(multi)
    assert (header.flag, header.all_labels, image) == (2, (1.0, 4.0), b"IMG")

    with pytest.raises(InvalidDataset, match="shorter than the 24-byte image record header"):
        unpack_image(b"short")
    with pytest.raises(InvalidDataset, match="header says 100 labels follow"):
        unpack_image(struct.pack("<IfQQ", 100, 0.0, 0, 0) + b"abc")


def _write_rec(path: Path, images: list[tuple[bytes, float | list[float], int]]) -> list[int]:
    with RecordIOWriter(path) as writer:
        return [writer.write(pack_image(img, label, id=key), key=key) for img, label, key in images]


def test_writer_index_and_reader_agree_with_and_without_idx(tmp_path: Path, make_image: Callable[..., bytes]) -> None:
    imgs = [make_image(i) for i in range(4)]
    # A payload with the magic at an aligned offset inside the image bytes must survive too.
    tricky = imgs[3][:24] + M + imgs[3][24:]
    rec = tmp_path / "train.rec"
    offsets = _write_rec(rec, [(imgs[0], 0.0, 10), (imgs[1], 1.0, 11), (imgs[2], 1.0, 12), (tricky, 0.0, 13)])
    assert [flag for flag, _ in _chunks(rec.read_bytes()[offsets[3] :])] == [1, 3]
    assert (tmp_path / "train.idx").read_text().splitlines() == [
        f"{k}\t{o}" for k, o in zip(range(10, 14), offsets, strict=True)
    ]

    with_idx = read_rec(rec)
    assert [(s.key, s.labels, s.offset) for s in with_idx.samples] == [
        (f"train.rec#{k}@{o}", (label,), o) for k, o, label in zip(range(10, 14), offsets, [0, 1, 1, 0], strict=True)
    ]
    assert with_idx.class_names == ("0", "1")
    assert not with_idx.file_backed
    assert [with_idx.read(s) for s in with_idx.samples] == [imgs[0], imgs[1], imgs[2], tricky]
    check_decodable(with_idx.read(with_idx.samples[0]))

    (tmp_path / "train.idx").unlink()
    scanned = read_rec(rec)
    assert [(s.key, s.labels) for s in scanned.samples] == [(s.key, s.labels) for s in with_idx.samples]


def test_class_names_and_multi_label(tmp_path: Path) -> None:
    rec = tmp_path / "m.rec"
    _write_rec(rec, [(b"a", [0.0, 2.0], 0), (b"b", 1.0, 1), (b"c", [2.0], 2)])
    (tmp_path / "classes.txt").write_text("x\ny\nz\n")
    source = read_rec(rec)
    assert source.multi_label
    assert [s.labels for s in source.samples] == [(0, 2), (1,), (2,)]
    assert source.class_names == ("x", "y", "z")
    with pytest.raises(InvalidDataset, match=r"label 2 is out of range; there are 2 classes"):
        read_rec(rec, class_names=["x", "y"])


def test_label_must_be_integral(tmp_path: Path) -> None:
    rec = tmp_path / "f.rec"
    _write_rec(rec, [(b"a", 0.0, 0), (b"b", 1.5, 1)])
    with pytest.raises(InvalidDataset, match=r"f.rec record 1 at byte offset \d+: label 1.5 is not a whole"):
        read_rec(rec)


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        read_rec(tmp_path / "none.rec")
    (tmp_path / "empty.rec").write_bytes(b"")
    with pytest.raises(InvalidDataset, match=r"empty.rec is empty \(0 bytes\)"):
        read_rec(tmp_path / "empty.rec")


def test_garbage_file_says_what_was_expected(tmp_path: Path) -> None:
    rec = tmp_path / "garbage.rec"
    rec.write_bytes(b"PK\x03\x04 this is a zip, not RecordIO at all")
    with pytest.raises(InvalidDataset) as info:
        read_rec(rec)
    message = str(info.value)
    assert "bad magic number at byte offset 0" in message
    assert "expected 0xced7230a (bytes 0a23d7ce)" in message
    assert "found bytes 504b0304" in message
    assert "may not be MXNet RecordIO" in message


def test_corruption_after_the_first_record_names_its_offset(tmp_path: Path) -> None:
    rec = tmp_path / "c.rec"
    good = encode_record(pack_image(b"image", 0.0))
    rec.write_bytes(good + b"\xde\xad\xbe\xef" + b"\0" * 12)
    with pytest.raises(InvalidDataset, match=rf"bad magic number at byte offset {len(good)}:"):
        read_rec(rec)


@pytest.mark.parametrize("cut", [3, 8, 20])
def test_truncated_file(tmp_path: Path, cut: int) -> None:
    first = encode_record(pack_image(b"first", 0.0))
    second = encode_record(pack_image(b"second image", 1.0))
    rec = tmp_path / "t.rec"
    rec.write_bytes(first + second[:cut])
    with pytest.raises(InvalidDataset, match=rf"truncated record at byte offset {len(first)}"):
        read_rec(rec)


def test_bad_continuation_flags(tmp_path: Path) -> None:
    rec = tmp_path / "flags.rec"
    rec.write_bytes(M + struct.pack("<I", (2 << 29) | 4) + b"abcd")
    with pytest.raises(InvalidDataset, match=r"bad continuation flag 2 at byte offset 0 .* expected 0 \(whole\)"):
        read_rec(rec)
    rec.write_bytes(M + struct.pack("<I", (1 << 29) | 4) + b"abcd" + M + struct.pack("<I", 4) + b"efgh")
    with pytest.raises(InvalidDataset, match=r"bad continuation flag 0 at byte offset 12 .* expected 2"):
        read_rec(rec)
    rec.write_bytes(M + struct.pack("<I", (5 << 29) | 4) + b"abcd")
    with pytest.raises(InvalidDataset, match=r"bad continuation flag 5 at byte offset 0"):
        read_rec(rec)


def test_stale_idx_is_reported(tmp_path: Path) -> None:
    rec = tmp_path / "s.rec"
    _write_rec(rec, [(b"a" * 40, 0.0, 0), (b"b", 1.0, 1)])
    (tmp_path / "s.idx").write_text("0\t0\n1\t8\n")
    with pytest.raises(InvalidDataset, match=r"bad magic number at byte offset 8.*via .*s.idx key 1; .* stale"):
        read_rec(rec)
    (tmp_path / "s.idx").write_text("0\t0\n1\t4096\n")
    with pytest.raises(InvalidDataset, match=r"s.idx, line 2: offset 4096 cannot start a record"):
        read_rec(rec)
    (tmp_path / "s.idx").write_text("0 0\n")
    with pytest.raises(InvalidDataset, match=r"s.idx, line 1: expected 'key<TAB>byte offset'"):
        read_rec(rec)


def test_multi_hot_records(tmp_path: Path, make_image: Callable[..., bytes]) -> None:
    """im2rec --pack-label of a multi-hot list: the header's extra labels are one 0/1 per class."""
    rec = tmp_path / "hot.rec"
    _write_rec(rec, [(make_image(0), [1.0, 0.0, 1.0], 0), (make_image(1), [0.0, 1.0, 0.0], 1)])
    source = read_rec(rec, label_format="auto")
    assert source.multi_label and source.class_names == ("0", "1", "2")
    assert [s.labels for s in source.samples] == [(0, 2), (1,)]
    with pytest.raises(InvalidDataset, match="a label is repeated"):
        read_rec(rec)
    _write_rec(rec, [(make_image(0), [1.0, 0.0, 1.0], 0), (make_image(1), [0.0, 1.0], 1)])
    with pytest.raises(InvalidDataset, match="2 multi-hot label values, but there are 3 classes"):
        read_rec(rec, label_format="multi-hot")
