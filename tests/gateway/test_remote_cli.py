"""``tfic predict --server HOST:PORT`` and ``tfic predict --gateway URL`` against the real services."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest

from tests.gateway.servers import LABELS, MODEL, RunningGateway, RunningInference
from tfic.errors import InvalidArgument, NotFound, Unavailable
from tfic.v1 import classifier_pb2, classifier_pb2_grpc, common_pb2
from tfic_cli.main import build_parser


def run_cli(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.handler(args)
    return code


def verbose(inference: RunningInference, image: bytes, top_k: int = 0) -> dict[str, object]:
    with grpc.insecure_channel(inference.target) as channel:
        request = classifier_pb2.ClassifyRequest(model=common_pb2.ModelSpec(name=MODEL), images=[image], top_k=top_k)
        result = classifier_pb2_grpc.ClassifierStub(channel).Classify(request, timeout=30).results[0]
    return {
        "probabilities": list(result.probabilities),
        "labels": list(result.labels),
        "predicted_label": result.predicted_label,
    }


@pytest.fixture
def folder(tmp_path: Path, images: dict[str, bytes]) -> Path:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.png").write_bytes(images["png"])
    (tmp_path / "b.jpg").write_bytes(images["jpeg"])
    (tmp_path / "sub" / "c.png").write_bytes(images["other_png"])
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def remote_flags(kind: str, inference: RunningInference, gateway: RunningGateway) -> list[str]:
    return ["--server", inference.target] if kind == "server" else ["--gateway", gateway.url]


@pytest.mark.parametrize("kind", ["server", "gateway"])
def test_one_image_prints_the_verbose_json(
    kind: str,
    inference: RunningInference,
    gateway: RunningGateway,
    folder: Path,
    images: dict[str, bytes],
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = run_cli(["predict", *remote_flags(kind, inference, gateway), "--model-name", MODEL, str(folder / "a.png")])
    assert code == 0
    assert json.loads(capsys.readouterr().out) == verbose(inference, images["png"])


@pytest.mark.parametrize("kind", ["server", "gateway"])
def test_folder_prints_json_lines_in_order(
    kind: str,
    inference: RunningInference,
    gateway: RunningGateway,
    folder: Path,
    images: dict[str, bytes],
    capsys: pytest.CaptureFixture[str],
) -> None:
    (folder / "sub" / "broken.png").write_bytes(images["truncated_png"])
    code = run_cli(
        ["predict", *remote_flags(kind, inference, gateway), "--model-name", MODEL, "--top-k", "2", str(folder)]
    )
    assert code == 1  # one image failed
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [Path(line["source"]).name for line in lines] == ["a.png", "b.jpg", "broken.png", "c.png"]
    assert {k: v for k, v in lines[0].items() if k != "source"} == verbose(inference, images["png"], top_k=2)
    assert len(lines[3]["labels"]) == 2
    assert set(lines[2]) == {"source", "error"} and "image" in lines[2]["error"]


def test_gateway_without_model_name_uses_its_default(
    inference: RunningInference,
    gateway: RunningGateway,
    folder: Path,
    images: dict[str, bytes],
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run_cli(["predict", "--gateway", gateway.url.removeprefix("http://"), str(folder / "a.png")]) == 0
    assert json.loads(capsys.readouterr().out)["labels"] == list(LABELS)


def test_server_without_model_name_and_several_models(inference: RunningInference, folder: Path) -> None:
    with pytest.raises(InvalidArgument, match="serves 2 models"):
        run_cli(["predict", "--server", inference.target, str(folder / "a.png")])


@pytest.mark.parametrize("kind", ["server", "gateway"])
def test_unknown_model_stops_the_run(
    kind: str, inference: RunningInference, gateway: RunningGateway, folder: Path
) -> None:
    with pytest.raises(NotFound, match="nope"):
        run_cli(["predict", *remote_flags(kind, inference, gateway), "--model-name", "nope", str(folder)])


@pytest.mark.parametrize("kind", ["server", "gateway"])
def test_unreachable_service(kind: str, refused_port: int, folder: Path) -> None:
    flags = (
        ["--server", f"127.0.0.1:{refused_port}"]
        if kind == "server"
        else ["--gateway", f"http://127.0.0.1:{refused_port}"]
    )
    with pytest.raises(Unavailable):
        run_cli(["predict", *flags, "--model-name", MODEL, str(folder / "a.png")])
