"""components/models-s3's model_sync.py against moto's S3 server (started here, no network): versions travel
whole, a half-uploaded version is never pulled, and an inference pod keeps the newest versions only."""

from __future__ import annotations

import importlib.util
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from deploy_support import K8S

SCRIPT = K8S / "components" / "models-s3" / "model_sync.py"
BUCKET = "tfic-models"
PREFIX = f"{BUCKET}/models"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("model_sync", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SYNC = _script()


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
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
    url = f"http://{host}:{port}"
    # moto keeps its state per process, across servers: start every test from an empty S3.
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"), timeout=10).close()
    boto3.client("s3", endpoint_url=url).create_bucket(Bucket=BUCKET)
    yield url
    server.stop()


def _version(root: Path, name: str, version: int) -> Path:
    """A stand-in version folder (the sync moves files; it never loads them)."""
    folder = root / name / str(version)
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(f"{name} {version}".encode())
    (folder / "variables" / "variables.index").write_bytes(b"index")
    (folder / "assets.extra").mkdir()
    (folder / "assets.extra" / "tfic.json").write_text('{"labels": ["a", "b"]}')
    return folder


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_push_then_pull_moves_whole_versions(tmp_path: Path, endpoint: str) -> None:
    trainer, inference = tmp_path / "trainer", tmp_path / "inference"
    for name, version in (("digits", 1), ("digits", 2), ("flowers", 3)):
        _version(trainer, name, version)
    (trainer / ".work" / "digits").mkdir(parents=True)  # checkpoints of a run: never shipped
    (trainer / "digits" / ".tmp-abc").mkdir()  # a version being written: never shipped
    fs = SYNC.filesystem(endpoint)
    assert SYNC.push(fs, trainer, PREFIX) == ["digits/1", "digits/2", "flowers/3"]
    assert SYNC.push(fs, trainer, PREFIX) == []  # idempotent
    assert SYNC.remote_versions(fs, PREFIX) == {"digits": {1, 2}, "flowers": {3}}
    assert not fs.exists(f"{PREFIX}/.work") and not fs.exists(f"{PREFIX}/digits/.tmp-abc")

    staged: list[str] = []
    get_file = fs.get_file

    def recording(remote: str, local: str, **kwargs: Any) -> None:
        staged.append(local)
        get_file(remote, local, **kwargs)

    fs.get_file = recording
    assert SYNC.pull(fs, PREFIX, inference) == ["digits/1", "digits/2", "flowers/3"]
    # Every file went to a staging folder the watcher ignores, which was then renamed into place.
    assert staged and all(f"/{SYNC.STAGING_PREFIX}" in path for path in staged)
    for name, version in (("digits", 1), ("digits", 2), ("flowers", 3)):
        assert _tree(inference / name / str(version)) == _tree(trainer / name / str(version))
    assert sorted(p.name for p in (inference / "digits").iterdir()) == ["1", "2"]
    assert SYNC.pull(fs, PREFIX, inference) == []


def test_an_unfinished_upload_is_not_pulled(tmp_path: Path, endpoint: str) -> None:
    fs = SYNC.filesystem(endpoint)
    source = _version(tmp_path / "trainer", "digits", 4)
    fs.put_file(str(source / "saved_model.pb"), f"{PREFIX}/digits/4/saved_model.pb")  # no marker yet
    assert SYNC.pull(fs, PREFIX, tmp_path / "inference") == []
    assert SYNC.push(fs, tmp_path / "trainer", PREFIX) == ["digits/4"]  # the upload is redone, then marked
    assert SYNC.pull(fs, PREFIX, tmp_path / "inference") == ["digits/4"]


def test_pull_keeps_the_newest_versions_only(tmp_path: Path, endpoint: str) -> None:
    trainer, inference = tmp_path / "trainer", tmp_path / "inference"
    fs = SYNC.filesystem(endpoint)
    _version(trainer, "digits", 1)
    _version(trainer, "digits", 2)
    SYNC.push(fs, trainer, PREFIX)
    assert SYNC.pull(fs, PREFIX, inference, latest=1, delete=True) == ["digits/2"]
    _version(trainer, "digits", 3)
    SYNC.push(fs, trainer, PREFIX)
    assert SYNC.pull(fs, PREFIX, inference, latest=1, delete=True) == ["digits/3", "-digits/2"]
    assert [p.name for p in (inference / "digits").iterdir()] == ["3"]


def test_command_line_one_pass(tmp_path: Path, endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _version(tmp_path / "trainer", "digits", 1)
    monkeypatch.setenv("TFIC_S3_ENDPOINT_URL", endpoint)
    remote = f"s3://{PREFIX}"
    assert SYNC.main(["push", "--local", str(tmp_path / "trainer"), "--remote", remote, "--once"]) == 0
    assert SYNC.main(["pull", "--local", str(tmp_path / "inference"), "--remote", remote, "--once"]) == 0
    assert (tmp_path / "inference" / "digits" / "1" / "saved_model.pb").is_file()
    # Nothing published yet (no prefix at all) is an empty repository, not an error.
    empty = f"s3://{BUCKET}/nothing-yet"
    assert SYNC.main(["pull", "--local", str(tmp_path / "empty"), "--remote", empty, "--once"]) == 0
    assert SYNC.local_versions(tmp_path / "empty") == {}
    with pytest.raises(SystemExit):
        SYNC.main(["pull", "--local", str(tmp_path / "x"), "--remote", "/not/s3", "--once"])


def test_labels_travel_after_the_versions_they_name(tmp_path: Path, endpoint: str) -> None:
    """The fleet labels file moves too; pull never names a version it has not placed, and keeps labelled ones."""
    trainer, inference = tmp_path / "trainer", tmp_path / "inference"
    fs = SYNC.filesystem(endpoint)
    for version in (1, 2, 3):
        _version(trainer, "digits", version)
    labels = trainer / "digits" / SYNC.LABELS_FILE
    labels.write_text('{"format": 1, "labels": {"stable": 1, "canary": 3}}')
    assert SYNC.push(fs, trainer, PREFIX) == ["digits/1", "digits/2", "digits/3", "digits/version_labels.json"]
    assert SYNC.push(fs, trainer, PREFIX) == []  # unchanged labels are not uploaded again
    # --latest 1 keeps the newest and the labelled versions: 3 (canary, newest) and 1 (stable), not 2.
    pulled = SYNC.pull(fs, PREFIX, inference, latest=1, delete=True)
    assert pulled == ["digits/1", "digits/3", "digits/version_labels.json"]
    assert (inference / "digits" / SYNC.LABELS_FILE).read_bytes() == labels.read_bytes()
    assert sorted(p.name for p in (inference / "digits").iterdir()) == ["1", "3", SYNC.LABELS_FILE]
    # Labels that name a version not uploaded yet wait on push, and on pull; the labels in effect keep theirs.
    _version(trainer, "digits", 4)
    labels.write_text('{"format": 1, "labels": {"stable": 4}}')
    fs.pipe_file(f"{PREFIX}/digits/{SYNC.LABELS_FILE}", labels.read_bytes())  # as if it raced ahead of v4
    assert SYNC.pull(fs, PREFIX, inference, latest=1, delete=True) == []
    assert b'"canary": 3' in (inference / "digits" / SYNC.LABELS_FILE).read_bytes()
    assert SYNC.push(fs, trainer, PREFIX) == ["digits/4"]  # the remote labels already equal the local file
    pulled = SYNC.pull(fs, PREFIX, inference, latest=1, delete=True)
    assert pulled == ["digits/4", "digits/version_labels.json", "-digits/1", "-digits/3"]
    assert sorted(p.name for p in (inference / "digits").iterdir()) == ["4", SYNC.LABELS_FILE]
