"""An ``s3://`` channel through fsspec/s3fs, against moto's S3 server started here (no network)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from trainer_harness import StartTrainer, rpc_error, spec

from tfic.modeldir import read_metadata
from tfic.v1 import trainer_pb2 as pb
from tfic_cli.main import main as tfic

BUCKET = "tfic-data"


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch, data_root: Path) -> Iterator[str]:
    """A moto S3 server on a free port holding 10 digits per class under s3://tfic-data/digits/."""
    import boto3
    from moto.server import ThreadedMotoServer

    for var in (
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket=BUCKET)
    digits = data_root / "digits"
    for folder in sorted(digits.iterdir()):
        for path in sorted(folder.glob("*.png"))[:10]:  # 100 images keep the upload and the download quick
            client.upload_file(str(path), BUCKET, f"digits/{path.relative_to(digits).as_posix()}")
    yield endpoint
    server.stop()


async def test_train_from_an_s3_channel(
    start_trainer: StartTrainer, s3_endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    trainer = await start_trainer(s3_endpoint_url=s3_endpoint)
    missing = await rpc_error(trainer.create("nothing-there", spec(f"s3://{BUCKET}/nothing/")))
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    assert f"s3://{BUCKET}/nothing/" in (missing.details() or "")

    argv = [
        "jobs", "submit", f"s3://{BUCKET}/digits/", "--model-name", "from-s3", "--name", "from-s3",
        "--epochs", "2", "--model", "small_cnn", "--image_shape", "3,16,16", "--seed", "7",
        "--wait", "--json", "--server", f"127.0.0.1:{trainer.port}",
    ]  # fmt: skip
    capsys.readouterr()
    code = await asyncio.to_thread(tfic, argv)
    out = capsys.readouterr().out
    lines = [json.loads(line) for line in out.splitlines()]
    final = lines[-1]
    assert code == 0, final
    assert final["state"] == "JOB_STATE_COMPLETED"
    assert any("epoch" in line for line in lines[:-1])  # the watched events came first
    version = trainer.settings.model_base_path / "from-s3" / "1"
    assert final["output"]["path"] == str(version)
    assert (version / "saved_model.pb").is_file()
    assert not (trainer.settings.jobs_dir / final["job_id"] / "cache").exists()  # the download is cleaned up
    job = await trainer.get("from-s3")
    assert job.state == pb.JOB_STATE_COMPLETED


async def test_an_augmented_manifest_of_s3_images_trains_through_the_service_and_the_cli(
    start_trainer: StartTrainer, s3_endpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SageMaker's pipe-mode input: JSON Lines naming s3:// images, labels under an AttributeNames attribute."""
    import boto3

    client = boto3.client("s3", endpoint_url=s3_endpoint)
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix="digits/")["Contents"]]
    folders = sorted({k.split("/")[1] for k in keys})
    lines = [
        {"source-ref": f"s3://{BUCKET}/{k}", "label": str(folders.index(k.split("/")[1])),
         "label-metadata": {"class-name": k.split("/")[1], "type": "groundtruth/image-classification"}}
        for k in keys[::2]
    ]  # fmt: skip
    client.put_object(Bucket=BUCKET, Key="manifests/digits.manifest", Body="".join(json.dumps(x) + "\n" for x in lines))
    uri = f"s3://{BUCKET}/manifests/digits.manifest"
    tiny = ["--epochs", "1", "--model", "small_cnn", "--image_shape", "3,16,16", "--seed", "7"]

    trainer = await start_trainer(s3_endpoint_url=s3_endpoint)
    argv = ["jobs", "submit", uri, "--attribute-names", "source-ref,label", "--model-name", "from-manifest",
            *tiny, "--wait", "--json", "--server", f"127.0.0.1:{trainer.port}"]  # fmt: skip
    capsys.readouterr()
    code = await asyncio.to_thread(tfic, argv)
    final = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert code == 0 and final["state"] == "JOB_STATE_COMPLETED", final
    assert final["spec"]["channels"][0]["attribute_names"] == ["source-ref", "label"]
    meta = read_metadata(trainer.settings.model_base_path / "from-manifest" / "1")
    assert meta.labels == tuple(folders)  # Ground Truth's class-name metadata names the classes

    # tfic train reads the same manifest from S3 (and its images), without the service.
    base = tmp_path / "models"
    argv = ["train", uri, "--model-base-path", str(base), "--model-name", "local", "--s3-endpoint-url",
            s3_endpoint, "--no-progress", *tiny]  # fmt: skip
    assert await asyncio.to_thread(tfic, argv) == 0
    assert read_metadata(base / "local" / "1").labels == tuple(folders)
    assert not (base / ".work" / "local.s3").exists()  # the copy is gone once the version is published


async def test_a_server_without_s3_credentials_says_so(
    start_trainer: StartTrainer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No credentials anywhere: FAILED_PRECONDITION naming what to set, not "internal error" (NoCredentialsError).

    Signing fails before any connection, so the endpoint need not answer (port 9 is discard's, closed here).
    """
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-role lookup on the network
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    trainer = await start_trainer(s3_endpoint_url="http://127.0.0.1:9")
    error = await rpc_error(trainer.create("no-credentials", spec(f"s3://{BUCKET}/digits/")))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    details = error.details() or ""
    assert "no S3 credentials" in details and "AWS_ACCESS_KEY_ID" in details and f"s3://{BUCKET}/digits/" in details
    argv = ["jobs", "submit", f"s3://{BUCKET}/digits/", "--model-name", "m", "--server", f"127.0.0.1:{trainer.port}"]
    assert await asyncio.to_thread(tfic, argv) == 2
    assert "no S3 credentials" in capsys.readouterr().err


def test_evaluate_and_predict_read_models_and_data_from_s3(
    s3_endpoint: str, trained_model: Path, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """tfic evaluate/predict on s3:// models (the latest version of a name, or one version) and s3:// data."""
    import boto3

    client = boto3.client("s3", endpoint_url=s3_endpoint)
    for version in ("1", "2"):  # the same weights twice: BASE/NAME means the latest, version 2
        for path in sorted(p for p in trained_model.rglob("*") if p.is_file()):
            client.upload_file(
                str(path), BUCKET, f"models/digits/{version}/{path.relative_to(trained_model).as_posix()}"
            )
    endpoint = ["--s3-endpoint-url", s3_endpoint]

    assert tfic(["evaluate", f"s3://{BUCKET}/models/digits", f"s3://{BUCKET}/digits/", "--json", *endpoint]) == 0
    from_s3 = json.loads(capsys.readouterr().out)
    local_copy = tmp_path / "digits"
    for folder in sorted((data_root / "digits").iterdir()):  # the 100 images the fixture uploaded
        (local_copy / folder.name).mkdir(parents=True)
        for path in sorted(folder.glob("*.png"))[:10]:
            (local_copy / folder.name / path.name).write_bytes(path.read_bytes())
    assert tfic(["evaluate", str(trained_model), str(local_copy), "--json"]) == 0
    local = json.loads(capsys.readouterr().out)
    assert from_s3["version"] == 2 and from_s3["images"] == local["images"] == 100
    assert from_s3["confusion_matrix"] == local["confusion_matrix"]

    image = sorted((local_copy / "digit_3").glob("*.png"))[0]
    assert (
        tfic(["predict", f"s3://{BUCKET}/models/digits/1", f"s3://{BUCKET}/digits/digit_3/{image.name}", *endpoint])
        == 0
    )
    single = json.loads(capsys.readouterr().out)
    assert tfic(["predict", str(trained_model), str(image)]) == 0
    assert single == json.loads(capsys.readouterr().out)
    assert tfic(["predict", f"s3://{BUCKET}/models/digits", f"s3://{BUCKET}/digits/digit_3/", *endpoint]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [x["source"] for x in lines] == [
        f"s3://{BUCKET}/digits/digit_3/{p.name}" for p in sorted((local_copy / "digit_3").glob("*.png"))
    ]
    assert tfic(["evaluate", f"s3://{BUCKET}/nothing", str(local_copy), *endpoint]) == 2
    assert f"s3://{BUCKET}/nothing does not exist" in capsys.readouterr().err
