"""TFRecord files of ``tf.train.Example`` with ``image/encoded``, ``image/class/label``, optional ``image/class/text``.

Loading reads every record once through ``tf.data.TFRecordDataset``, which verifies the CRCs, and
keeps only labels and byte offsets; :meth:`TFRecordSource.read` re-reads one record at its offset
(no CRC check the second time), so memory does not grow with the dataset. Class names come from
``class_names``, else ``image/class/text``, else ``labels.json``/``classes.txt`` next to the first
file, else ``"i"``. TensorFlow is imported inside the functions: importing it costs seconds, and
the other readers and the CLI should not pay that.
"""

from __future__ import annotations

import glob
import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfic.errors import InvalidDataset, NotFound
from trainer_svc.data.classnames import find_class_names, resolve_class_names, validate_class_names
from trainer_svc.data.source import DataSource, Sample

IMAGE_KEY = "image/encoded"
LABEL_KEY = "image/class/label"
TEXT_KEY = "image/class/text"
# length (uint64) + its masked CRC32C (uint32) before the data, the data's CRC32C after.
_FRAME_HEAD = 12
_FRAME_OVERHEAD = 16


def write_tfrecord(
    path: str | os.PathLike[str],
    items: Iterable[tuple[bytes, int | Sequence[int]]],
    class_names: Sequence[str] | None = None,
) -> int:
    """Write ``(encoded image, label or labels)`` pairs; with ``class_names`` each single-label example also gets
    ``image/class/text`` (several labels are several ``image/class/label`` values, named by a labels.json)."""
    import tensorflow as tf

    count = 0
    with tf.io.TFRecordWriter(str(path)) as writer:
        for image, given in items:
            labels = [given] if isinstance(given, int) else list(given)
            feature = {
                IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
                LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=labels)),
            }
            if class_names is not None and len(labels) == 1:
                text = class_names[labels[0]].encode()
                feature[TEXT_KEY] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[text]))
            example = tf.train.Example(features=tf.train.Features(feature=feature))
            writer.write(example.SerializeToString())
            count += 1
    return count


@dataclass
class TFRecordSource(DataSource):
    """Samples keyed ``<file>#<n>``; ``files`` maps the ``<file>`` part to its path."""

    files: dict[str, Path] = field(default_factory=dict)

    def read(self, sample: Sample) -> bytes:
        name = sample.key.rpartition("#")[0]
        path = self.files[name]
        with open(path, "rb") as f:
            f.seek(sample.offset)
            head = f.read(_FRAME_HEAD)
            length = struct.unpack_from("<Q", head)[0] if len(head) == _FRAME_HEAD else 0
            data = f.read(length)
        if not head or len(data) != length:
            raise InvalidDataset(f"{path}: record {sample.key} is truncated (file changed since it was loaded?)")
        return _image(_parse_example(data, sample.key), sample.key)


def expand(path_or_glob: str | os.PathLike[str]) -> list[Path]:
    text = os.fspath(path_or_glob)
    if glob.has_magic(text) and not os.path.exists(text):
        matches = sorted(Path(p) for p in glob.glob(text) if os.path.isfile(p))
        if not matches:
            raise NotFound(f"no TFRecord files match {text}")
        return matches
    path = Path(text)
    if not path.is_file():
        raise NotFound(f"TFRecord file {path} does not exist")
    return [path]


def read_tfrecord(
    path_or_glob: str | os.PathLike[str],
    *,
    class_names: Sequence[str] | None = None,
    check_classes: bool = True,
) -> TFRecordSource:
    import tensorflow as tf

    paths = expand(path_or_glob)
    names: tuple[str, ...] | None = None
    if class_names is not None:
        names = validate_class_names(class_names, "class names")
    basenames = [p.name for p in paths]
    # Short keys when unambiguous; full paths only when two files in the glob share a name.
    file_keys = basenames if len(set(basenames)) == len(basenames) else [str(p) for p in paths]
    samples: list[Sample] = []
    texts: dict[int, tuple[str, str]] = {}
    for path, file_key in zip(paths, file_keys, strict=True):
        with open(path, "rb") as f:
            if f.read(2) == b"\x1f\x8b":
                raise InvalidDataset(f"{path} is GZIP-compressed; decompress it (gunzip) to train on it")
        offset = 0
        n = 0
        iterator = iter(tf.data.TFRecordDataset(str(path)))
        while True:
            try:
                record = next(iterator)
            except StopIteration:
                break
            except tf.errors.DataLossError as exc:
                raise InvalidDataset(_data_loss(path, n, offset, exc.message)) from None
            data: bytes = record.numpy()
            key = f"{file_key}#{n}"
            example = _parse_example(data, f"{path} record #{n}")
            labels = _labels(example, f"{path} record #{n}", names)
            text = _text(example)
            if text is not None and len(labels) == 1:
                earlier = texts.setdefault(labels[0], (text, key))
                if earlier[0] != text:
                    raise InvalidDataset(
                        f"{path} record #{n}: label {labels[0]} is named {text!r}, but {earlier[1]} names it "
                        f"{earlier[0]!r}"
                    )
            samples.append(Sample(key=key, labels=labels, offset=offset))
            offset += len(data) + _FRAME_OVERHEAD
            n += 1
        if n == 0:
            raise InvalidDataset(f"{path} contains no records")
    used = {label for s in samples for label in s.labels}
    if names is None and texts:
        unnamed = sorted(used - texts.keys())
        if unnamed:
            raise InvalidDataset(
                f"{paths[0]}: some records have {TEXT_KEY} but none of class {unnamed[0]}'s do; name every class "
                "or none"
            )
        # Gaps (unused labels) get "i"; resolve_class_names reports them when checking classes.
        names = tuple(texts[i][0] if i in texts else str(i) for i in range(max(used) + 1))
    elif names is None and (found := find_class_names(paths[0].parent)) is not None:
        names = found[0]
        for s in samples:
            if max(s.labels) >= len(names):
                raise InvalidDataset(
                    f"{s.key}: label {max(s.labels)} is out of range; {found[1]} names {len(names)} classes"
                )
    where = str(paths[0]) if len(paths) == 1 else f"{paths[0]} (and {len(paths) - 1} more files)"
    resolved = resolve_class_names(used, names, where, check_classes)
    return TFRecordSource(
        samples=samples,
        class_names=resolved,
        description=f"TFRecord {where}: {len(samples)} images in {len(resolved)} classes",
        multi_label=any(len(s.labels) > 1 for s in samples),
        files=dict(zip(file_keys, paths, strict=True)),
    )


def _data_loss(path: Path, n: int, offset: int, message: str) -> str:
    # TensorFlow's text carries graph-function noise; keep only its verdict.
    kind = "truncated" if "truncated" in message else "corrupt (checksum mismatch)"
    hint = "; the file may not be a TFRecord" if n == 0 and kind != "truncated" else ""
    return f"{path}: record #{n} at byte offset {offset} is {kind}{hint}"


def _parse_example(data: bytes, where: str) -> Any:
    from google.protobuf.message import DecodeError
    from tensorflow.core.example.example_pb2 import Example

    try:
        return Example.FromString(data)
    except DecodeError:
        raise InvalidDataset(f"{where} is not a serialized tf.train.Example") from None


def _image(example: Any, where: str) -> bytes:
    feature = example.features.feature
    if IMAGE_KEY not in feature:
        raise InvalidDataset(f"{where} has no {IMAGE_KEY!r} feature (it has: {', '.join(sorted(feature)) or 'none'})")
    values = feature[IMAGE_KEY].bytes_list.value
    if len(values) != 1:
        raise InvalidDataset(f"{where}: {IMAGE_KEY!r} must hold exactly one bytes value, found {len(values)}")
    return bytes(values[0])


def _labels(example: Any, where: str, names: Sequence[str] | None) -> tuple[int, ...]:
    feature = example.features.feature
    _image(example, where)
    if LABEL_KEY not in feature:
        raise InvalidDataset(f"{where} has no {LABEL_KEY!r} feature (it has: {', '.join(sorted(feature))})")
    label_feature = feature[LABEL_KEY]
    kind = label_feature.WhichOneof("kind")
    if kind == "int64_list":
        values: list[float] = [float(v) for v in label_feature.int64_list.value]
    elif kind == "float_list":
        values = list(label_feature.float_list.value)
    else:
        raise InvalidDataset(f"{where}: {LABEL_KEY!r} must be an int64 (or integral float) list, found {kind}")
    if not values:
        raise InvalidDataset(f"{where}: {LABEL_KEY!r} is empty")
    labels: list[int] = []
    for value in values:
        if not value.is_integer() or value < 0:
            raise InvalidDataset(f"{where}: label {value:g} is not a whole non-negative number")
        if names is not None and value >= len(names):
            raise InvalidDataset(f"{where}: label {int(value)} is out of range; there are {len(names)} classes")
        labels.append(int(value))
    if len(set(labels)) != len(labels):
        raise InvalidDataset(f"{where}: a label is repeated in {labels}")
    return tuple(labels)


def _text(example: Any) -> str | None:
    feature = example.features.feature
    if TEXT_KEY not in feature or not feature[TEXT_KEY].bytes_list.value:
        return None
    return bytes(feature[TEXT_KEY].bytes_list.value[0]).decode("utf-8", errors="replace")
