"""The torch-free checkpoint reader gives exactly what torch.load gives, and nothing more dangerous."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from trainer_svc.backbones import efficientnet_lite_weights, torch_legacy
from trainer_svc.backbones.torch_legacy import CheckpointError


def test_packaged_checkpoint_reads_exactly_as_torch_load() -> None:
    torch = pytest.importorskip("torch")
    path = efficientnet_lite_weights.packaged_checkpoint()
    ours = torch_legacy.load_state_dict(path)
    theirs = torch.load(path, map_location="cpu")
    assert list(ours) == list(theirs)
    assert len(ours) == 296
    for key, tensor in theirs.items():
        expected = tensor.numpy()
        got = ours[key]
        assert got.dtype == expected.dtype, key
        assert got.shape == expected.shape, key
        np.testing.assert_array_equal(got, expected, err_msg=key)
        assert got.flags.c_contiguous and got.flags.owndata
    # The conv kernels in this file are stored channels-last (non-contiguous strides).
    assert not theirs["_conv_stem.weight"].is_contiguous()


@pytest.mark.parametrize("zip_format", [False, True], ids=["legacy", "zip"])
def test_views_offsets_strides_and_dtypes(tmp_path: Path, zip_format: bool) -> None:
    torch = pytest.importorskip("torch")
    base = torch.arange(60, dtype=torch.float32).reshape(3, 4, 5)
    state = {
        "transposed": base.permute(2, 0, 1),  # non-contiguous strides
        "slice": base[1:, 2],  # storage offset into a shared storage
        "view": base.view(12, 5)[3:7],
        "float64": torch.linspace(0, 1, 7, dtype=torch.float64),
        "int64": torch.tensor([1, -2, 3 << 40]),
        "uint8": torch.tensor([0, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False]),
        "half": torch.tensor([0.5, -2.0], dtype=torch.float16),
        "scalar": torch.tensor(7),
        "empty": torch.zeros(0, 3),
        "param": torch.nn.Parameter(torch.ones(2, 2)),
    }
    path = tmp_path / "state.pth"
    torch.save(state, path, _use_new_zipfile_serialization=zip_format)
    ours = torch_legacy.load_state_dict(path)
    assert list(ours) == list(state)
    for key, tensor in state.items():
        expected = tensor.detach().numpy()
        assert ours[key].dtype == expected.dtype, key
        np.testing.assert_array_equal(ours[key], expected, err_msg=key)


def test_nested_checkpoint(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    path = tmp_path / "ckpt.pt"
    torch.save({"epoch": 3, "state_dict": {"w": torch.ones(2)}}, path, _use_new_zipfile_serialization=False)
    assert torch_legacy.load(path)["epoch"] == 3
    np.testing.assert_array_equal(torch_legacy.load_state_dict(path)["w"], np.ones(2, np.float32))


def _legacy_file(path: Path, payload: bytes) -> None:
    with path.open("wb") as f:
        for header in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
            pickle.dump(header, f, protocol=2)
        f.write(payload)


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, ("echo pwned",))


def test_refuses_arbitrary_globals(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    _legacy_file(path, pickle.dumps({"x": _Evil()}, protocol=2) + pickle.dumps([], protocol=2))
    with pytest.raises(CheckpointError, match=r"os(ix)?\.system"):
        torch_legacy.load(path)


def test_rejects_truncated_and_foreign_files(tmp_path: Path) -> None:
    data = efficientnet_lite_weights.packaged_checkpoint().read_bytes()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(data[: len(data) - 1000])
    with pytest.raises(CheckpointError, match="truncated"):
        torch_legacy.load(truncated)
    foreign = tmp_path / "foreign.pth"
    foreign.write_bytes(pickle.dumps({"a": 1}) + struct.pack("<q", 5))
    with pytest.raises(CheckpointError, match="magic"):
        torch_legacy.load(foreign)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00\x01garbage")
    with pytest.raises(CheckpointError):
        torch_legacy.load(garbage)
    not_a_state_dict = tmp_path / "list.pth"
    _legacy_file(not_a_state_dict, pickle.dumps([1, 2], protocol=2) + pickle.dumps([], protocol=2))
    with pytest.raises(CheckpointError, match="not a state dict"):
        torch_legacy.load_state_dict(not_a_state_dict)
