"""The documentation's examples run: every shell and Python block of README.md and docs/ is executed, or
skipped for a stated reason, so an example can no longer drift from the code.

The blocks run as written in a scratch folder that holds what they name: real tiny SavedModels
``models/flowers`` and ``models/digits`` served by the real inference service and gateway, and images
(``photo.jpg``, ``cat.jpg``, ``3.png``, ``photos/``). The only rewriting is of addresses: the documented
``localhost:8500`` and ``localhost:8080`` become the servers' free ports. A shell block runs under
``bash -euo pipefail`` with ``curl`` failing on HTTP errors, so a 415 fails the test; a Python block must
exit 0. ``BLOCKS`` below names every block (by file and first line): a new block without an entry, or an
entry whose block is gone, fails ``test_every_block_has_a_policy``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from gateway.settings import GatewaySettings
from tests.gateway.servers import encode, run_gateway, run_inference

ROOT = Path(__file__).resolve().parents[1]
DOCS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
FENCE = re.compile(r"^[ \t]*```(\w*)\n(.*?)^[ \t]*```", re.S | re.M)  # fences in list items are indented
FLOWERS = ("daisy", "roses", "tulips")


@dataclass(frozen=True)
class Block:
    path: str  # relative to the repository
    line: int
    lang: str
    text: str

    @property
    def key(self) -> tuple[str, str]:
        first = next((x.strip() for x in self.text.splitlines() if x.strip()), "")
        return self.path, first[:60].rstrip()

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True)
class Run:
    """Run the block; ``expect``: text its output must contain; ``skip``: commands (by prefix) left out, why."""

    expect: str = ""
    skip: tuple[str, ...] = ()
    why: str = ""


@dataclass(frozen=True)
class Skip:
    why: str


NOT_CODE = Skip("a diagram or a listing, not a command")
BENCH = Skip("a benchmark (minutes); `make bench` and bench/ run these")
CLUSTER = Skip("needs Docker, a Kubernetes cluster or helm; tests/deploy renders and validates the manifests")
SYNOPSIS = Skip("a synopsis ([optional] parts, placeholders), not a literal command")
SERVER = Skip("starts a long-running server; tests/*/test_*from_env*, test_main and tfic up start the same")

# Every block of README.md and docs/*.md, by (file, first non-empty line).
BLOCKS: dict[tuple[str, str], Run | Skip] = {
    (
        "README.md",
        "make demo   # creates .venv, installs everything, trains + e",
    ): Skip("the two commands themselves: CI runs `make test`, a fresh-clone check `make demo`"),
    ("README.md", "HTTP (SAGEMAKER CONTRACTS,                   GRPC TFIC.V1.CL"): NOT_CODE,
    ("README.md", "tfic train DATA --model-base-path models --model-name flower"): SYNOPSIS,
    (
        "README.md",
        "tfic serve trainer   --model-base-path models --state-dir tr",
    ): Run(
        expect='"predicted_label"',
        skip=("tfic serve", "tfic jobs", "tfic models"),
        why=(
            "the servers are the test's own; `tfic jobs` needs a Trainer (tests/trainer_svc/service); "
            "`tfic models promote` a second version (tests/tfic_cli/test_models_labels.py)"
        ),
    ),
    (
        "README.md",
        "pip install -c constraints.txt '.[gateway]'     # tfic serve",
    ): Skip("installs packages; tests/deploy/test_deploy_extras.py installs each extra in a venv of its own"),
    ("docs/architecture.md", "tfic_cli  (the `tfic` command; each command imported only wh"): NOT_CODE,
    ("docs/benchmarks.md", ".venv/bin/python -m bench.train_throughput --epochs 4 --roun"): BENCH,
    (
        "docs/benchmarks.md",
        ".venv/bin/python -m bench.transfer_quality          # clothi",
    ): BENCH,
    (
        "docs/benchmarks.md",
        ".venv/bin/python -m bench.transfer_vs_scratch",
    ): BENCH,
    ("docs/deploy.md", "REGISTRY=registry.example.com/tfic TAG=0.1.0"): CLUSTER,
    ("docs/deploy.md", "kind create cluster                        # or minikube / k"): CLUSTER,
    ("docs/deploy.md", ".venv/bin/python scripts/service_venvs.py --starts 3 gateway"): Skip(
        "builds three venvs (minutes); tests/deploy/test_deploy_extras.py runs the same script"
    ),
    (
        "docs/deploy.md",
        "helm repo add prometheus-community https://prometheus-commun",
    ): CLUSTER,
    ("docs/deploy.md", "python scripts/pin_images.py deploy/k8s/overlays/cpu \\"): Skip(
        "the digests are your registry's (… placeholders); tests/deploy/test_deploy_production.py runs the script"
    ),
    ("docs/deploy.md", "kubectl create namespace tfic && kubectl label namespace tfi"): CLUSTER,
    ("docs/deploy.md", ".venv/bin/python -m bench.deploy_memory --requests 40    # →"): BENCH,
    (
        "docs/deploy.md",
        "kubectl -n tfic run data-loader --image=busybox --restart=Ne",
    ): CLUSTER,
    ("docs/deploy.md", "kubectl -n tfic port-forward svc/tfic-trainer 8600:8600 &"): CLUSTER,
    ("docs/deploy.md", "kubectl -n tfic port-forward svc/tfic-gateway 8080:8080 &"): CLUSTER,
    (
        "docs/deploy.md",
        'kubectl get --raw "/apis/custom.metrics.k8s.io/v1beta1/names',
    ): CLUSTER,
    ("docs/deploy.md", "kubectl apply -k deploy/k8s/training/tfjob"): CLUSTER,
    ("docs/deploy.md", "kubectl apply -k deploy/k8s/training/indexed-job"): CLUSTER,
    (
        "docs/export.md",
        "tfic export models/flowers/3 --output edge/flowers-float",
    ): Skip(
        "converts with TFLite and tf2onnx (a minute); tests/trainer_svc/training/test_edge_export.py runs each format"
    ),
    (
        "docs/gateway.md",
        "tfic serve gateway --inference localhost:8500 [--port 8080]",
    ): SYNOPSIS,
    (
        "docs/gateway.md",
        """curl -d '{\"instances\": [{\"b64\": \"'$(base64 -w0 cat.jpg)'\"}]}""",
    ): Run(expect='{"results":[[["daisy",'),
    (
        "docs/gateway.md",
        "tfic predict --gateway http://localhost:8080 photo.jpg photo",
    ): Run(expect='"source"'),
    (
        "docs/gateway.md",
        "python -m bench.gateway.run --rounds 6",
    ): BENCH,
    ("docs/gateway.md", "python -m bench.gateway.slow_clients                      #"): BENCH,
    ("docs/gateway.md", "python -m bench.gateway.recovery                          #"): BENCH,
    (
        "docs/inference.md",
        "tfic serve inference --model-base-path demo-output/models",
    ): SERVER,
    (
        "docs/inference.md",
        "client ─gRPC─▶ servicers/ (protobuf ⇄ plain types) ─▶ predic",
    ): NOT_CODE,
    ("docs/inference.md", "model_config_list {"): Skip(
        "a model config file, read by tests/inference_svc/test_repository.py's config tests"
    ),
    (
        "docs/inference.md",
        "python -m bench.parity                                   # ~",
    ): BENCH,
    (
        "docs/inference.md",
        "python -m bench.inference.decode --sizes 224,32 --out bench/",
    ): BENCH,
    ("docs/inference.md", "import grpc"): Run(),  # three blocks start so; each is checked by its own entry below
    ("docs/inference.md", "grpcurl -plaintext localhost:8500 list"): Skip(
        "grpcurl is not a dependency; tests/inference_svc/test_server.py checks reflection lists these services"
    ),
    ("docs/inference.md", 'export TFIC_INFERENCE_AUTH_TOKEN="$(openssl rand -hex 32)"'): Skip(
        "needs certificates; tests/inference_svc/test_security.py serves with the same flags"
    ),
    (
        "docs/inference.md",
        "python -m bench.inference.run --rounds 3          # what pro",
    ): BENCH,
    ("docs/model-directory.md", "<model_base_path>/"): NOT_CODE,
    (
        "docs/model-directory.md",
        "tensorflow_model_server --model_base_path=$PWD/models/digits",
    ): Skip("TensorFlow Serving's own binary, not installed here (no Docker)"),
    (
        "docs/trainer.md",
        "tfic serve trainer --state-dir /var/lib/tfic/trainer --model",
    ): SERVER,
    ("docs/training.md", "waiting for workers 10.0.0.7:2222 (1 of 2 listening; this is"): NOT_CODE,
    ("docs/trainer.md", "Pending ──> InProgress ──> Completed | Failed (failure_reaso"): NOT_CODE,
    ("docs/gateway.md", 'curl -X POST -H "Authorization: Bearer $TOKEN" -d \'{"reason"'): Skip(
        "its middle call answers 409 by design, and unloading would take the shared model away from the other "
        "blocks; tests/gateway/test_gateway_model_control.py makes the same three calls"
    ),
    ("docs/inference.md", 'BASE/<model>/version_labels.json        # {"format": 1, "lab'): NOT_CODE,
    ("docs/inference.md", "tfic models promote models/flowers 2 --label canary --canary"): Skip(
        "needs a second version; tests/tfic_cli/test_models_labels.py promotes, rolls back and unlabels"
    ),
    ("docs/inference.md", 'grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d \'{"n'): Skip(
        "grpcurl is not a dependency; tests/inference_svc/test_model_control.py calls ModelControl"
    ),
    ("docs/benchmarks.md", "make bench-peers-venv                      # BentoML 1.4.40"): BENCH,
    ("docs/console.md", "tfic serve gateway --inference localhost:8500 --trainer loca"): SERVER,
    ("docs/training.md", "tensorboard --logdir models/.work/digits.tensorboard      #"): Skip(
        "starts TensorBoard's web server; tests/trainer_svc/training/test_tensorboard.py reads the same event files "
        "with TensorBoard's own reader"
    ),
}

# Blocks sharing a first line: what each must print, in order of appearance.
PYTHON_EXPECT = {"docs/inference.md": ["digit_", "[[", "unsupported_format"]}


def collect() -> list[Block]:
    blocks = []
    for doc in DOCS:
        text = doc.read_text()
        for m in FENCE.finditer(text):
            lang = m.group(1)
            if lang in ("", "sh", "bash", "python"):
                line = text.count("\n", 0, m.start()) + 1
                blocks.append(Block(str(doc.relative_to(ROOT)), line, lang, textwrap.dedent(m.group(2))))
    return blocks


def _policy(block: Block) -> Run | Skip | None:
    path, first = block.key
    return BLOCKS.get((path, first)) or BLOCKS.get((path, first.upper()))


def test_every_block_has_a_policy() -> None:
    blocks = collect()
    missing = [f"{b}: {b.key[1]!r}" for b in blocks if _policy(b) is None]
    assert not missing, "doc blocks with no entry in tests/test_docs_run.py BLOCKS:\n" + "\n".join(missing)
    keys = {b.key for b in blocks} | {(b.key[0], b.key[1].upper()) for b in blocks}
    stale = [k for k in BLOCKS if k not in keys]
    assert not stale, f"BLOCKS entries whose block is gone: {stale}"


@dataclass(frozen=True)
class World:
    folder: Path
    env: dict[str, str]
    addresses: dict[str, str]  # documented address → the test's

    def rewrite(self, text: str) -> str:
        for documented, actual in self.addresses.items():
            text = text.replace(documented, actual)
        return text


def _export(base: Path, name: str, labels: tuple[str, ...], size: int, seed: int) -> None:
    import tf_keras

    from tfic.modeldir import ModelMetadata, Preprocessing
    from trainer_svc.training import architectures
    from trainer_svc.training.export import export_version
    from trainer_svc.training.model import build_classifier

    tf_keras.utils.set_random_seed(seed)
    shape = (size, size, 3)
    model = build_classifier(architectures.small_cnn(shape), len(labels), shape, Preprocessing(), 0.0, 0.0, seed)
    export_version(base, name, model, ModelMetadata(labels=labels, image_shape=shape))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from tfic_demo.digits import write_digits

    folder = tmp_path_factory.mktemp("docs")
    models = folder / "models"
    _export(models, "flowers", FLOWERS, 32, seed=1)
    _export(models, "digits", tuple(f"digit_{d}" for d in range(10)), 16, seed=2)
    rng = np.random.default_rng(3)
    photo = encode(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), "JPEG")
    for name in ("photo.jpg", "cat.jpg", "rose.jpg"):
        (folder / name).write_bytes(photo)
    (folder / "photos").mkdir()
    for i in range(2):
        (folder / "photos" / f"{i}.jpg").write_bytes(encode(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8), "JPEG"))
    digits = write_digits(folder / "digits-data", per_class=1)
    shutil.copy(digits / "digit_3" / sorted(os.listdir(digits / "digit_3"))[0], folder / "3.png")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TFIC_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT)
    with (
        run_inference(models) as inference,
        run_gateway(GatewaySettings(inference=inference.target, default_model="flowers")) as gateway,
    ):
        addresses = {
            "http://localhost:8080": gateway.url,
            "localhost:8080": gateway.url,
            "localhost:8500": inference.target,
        }
        yield World(folder, env, addresses)


def _commands(text: str) -> list[str]:
    """A shell block's commands: continuation lines joined, comment lines dropped."""
    commands, current = [], ""
    for raw in text.splitlines():
        line = raw.rstrip()
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line[:-1] + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            commands.append(current)
            current = ""
    return commands


# curl's default exits 0 on an HTTP error: a documented curl that gets a 415 must fail.
_PRELUDE = 'curl() { command curl --silent --show-error --fail-with-body "$@" || return $?; echo; }\n'


def _run_shell(world: World, block: Block, policy: Run) -> str:
    kept = [c for c in _commands(block.text) if not c.startswith(policy.skip or ("\0",))]
    assert kept, f"{block}: every command skipped"
    script = _PRELUDE + world.rewrite("\n".join(kept))
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=world.folder,
        env=world.env,
        capture_output=True,
        check=False,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"{block} failed ({done.returncode}):\n{script}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _run_python(world: World, block: Block) -> str:
    done = subprocess.run(
        [sys.executable, "-c", world.rewrite(block.text)],
        cwd=world.folder,
        env=world.env,
        capture_output=True,
        check=False,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"{block} failed ({done.returncode}):\n{block.text}\n{done.stdout}\n{done.stderr}"
    return done.stdout


RUNNABLE = [b for b in collect() if isinstance(_policy(b), Run)]


@pytest.mark.parametrize("block", RUNNABLE, ids=str)
def test_doc_block_runs(world: World, block: Block) -> None:
    policy = _policy(block)
    assert isinstance(policy, Run)
    if block.lang == "python":
        output = _run_python(world, block)
        same_start = [b for b in RUNNABLE if b.key == block.key]
        expected = PYTHON_EXPECT.get(block.path, [])
        expect = expected[same_start.index(block)] if len(same_start) > 1 else policy.expect
    else:
        output = _run_shell(world, block, policy)
        expect = policy.expect
    assert expect in output, f"{block}: {expect!r} not in its output:\n{output}"
