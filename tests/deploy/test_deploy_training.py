"""Distributed training manifests: the Indexed Job's TF_CONFIG entry point, its headless Service and the TFJob
run `tfic train --strategy multi-worker` on the shared volumes."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from types import ModuleType

import pytest
from deploy_support import (
    K8S,
    NAMESPACE,
    Obj,
    container,
    container_port,
    find,
    matches,
    of_kind,
    parse_cli,
    pod_templates,
    render,
)

SCRIPT = K8S / "training" / "indexed-job" / "tf_config.py"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tf_config", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tf_config_lists_every_worker_and_this_task() -> None:
    tf_config = _script()
    config = tf_config.tf_config(index=1, workers=3, job_name="train", subdomain="workers", port=2222, namespace="ns")
    assert config == {
        "cluster": {"worker": [f"train-{i}.workers.ns.svc:2222" for i in range(3)]},
        "task": {"type": "worker", "index": 1},
    }
    assert tf_config.worker_hosts("j", "s", 2, 5000) == ["j-0.s:5000", "j-1.s:5000"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TFIC_TF_WORKERS": "2", "TFIC_TF_JOB_NAME": "j", "TFIC_TF_SUBDOMAIN": "s"}, "JOB_COMPLETION_INDEX"),
        ({"JOB_COMPLETION_INDEX": "2", "TFIC_TF_WORKERS": "2", "TFIC_TF_JOB_NAME": "j", "TFIC_TF_SUBDOMAIN": "s"},
         "outside 0..1"),
        ({"JOB_COMPLETION_INDEX": "0", "TFIC_TF_WORKERS": "two", "TFIC_TF_JOB_NAME": "j", "TFIC_TF_SUBDOMAIN": "s"},
         "not an integer"),
        ({"JOB_COMPLETION_INDEX": "0", "TFIC_TF_WORKERS": "2", "TFIC_TF_SUBDOMAIN": "s"}, "job name"),
    ],
)  # fmt: skip
def test_tf_config_refuses_an_inconsistent_environment(env: dict[str, str], message: str) -> None:
    tf_config = _script()
    with pytest.raises(tf_config.ConfigError, match=message):
        tf_config.from_environment(env)


def test_entry_point_exports_tf_config_then_runs_the_command() -> None:
    env = {
        **os.environ,
        "JOB_COMPLETION_INDEX": "1",
        "TFIC_TF_WORKERS": "2",
        "TFIC_TF_JOB_NAME": "tfic-train",
        "TFIC_TF_SUBDOMAIN": "tfic-train-workers",
    }
    show = [sys.executable, "-c", "import os, sys; sys.stdout.write(os.environ['TF_CONFIG'])"]
    command = [sys.executable, str(SCRIPT), *show]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    config = json.loads(done.stdout)
    assert config["task"] == {"type": "worker", "index": 1}
    assert config["cluster"]["worker"] == [
        "tfic-train-0.tfic-train-workers:2222",
        "tfic-train-1.tfic-train-workers:2222",
    ]
    bad = {**env, "JOB_COMPLETION_INDEX": "5"}
    failed = subprocess.run(command, env=bad, capture_output=True, text=True, timeout=60, check=False)
    assert failed.returncode == 2 and "outside" in failed.stderr


def _assert_runs_multi_worker_training(argv: list[str], c: Obj) -> None:
    """`tfic ARGV` is a multi-worker `train` writing to the models mount and reading from the data mount."""
    args = parse_cli(argv, {})
    assert args.command == "train" and args.strategy == "multi-worker"
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert str(args.model_base_path) == mounts["models"]["mountPath"] and not mounts["models"].get("readOnly")
    for data in (args.data, args.validation):
        assert data.startswith(mounts["data"]["mountPath"] + "/") and mounts["data"]["readOnly"]


def test_indexed_job_builds_tf_config_from_its_completion_index() -> None:
    docs = render("training/indexed-job")
    job = find(docs, "Job", "tfic-train")
    service = find(docs, "Service", "tfic-train-workers")
    spec = job["spec"]
    template = spec["template"]
    c = container(job, "worker")
    env = {e["name"]: e for e in c["env"]}
    workers = int(env["TFIC_TF_WORKERS"]["value"])
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] == workers >= 2
    assert template["spec"]["restartPolicy"] in ("OnFailure", "Never")
    # The workers' DNS names: <job>-<index>.<subdomain>, published by a headless Service selecting them.
    assert template["spec"]["subdomain"] == service["metadata"]["name"] == env["TFIC_TF_SUBDOMAIN"]["value"]
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"] is True
    assert matches(service["spec"]["selector"], template["metadata"]["labels"])
    port = int(env["TFIC_TF_PORT"]["value"])
    assert container_port(c, "tf") == port == service["spec"]["ports"][0]["port"]
    assert (
        env["TFIC_TF_JOB_NAME"]["valueFrom"]["fieldRef"]["fieldPath"]
        == "metadata.labels['batch.kubernetes.io/job-name']"
    )
    assert env["TFIC_TF_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    # The entry point is the script shipped in the ConfigMap, run under tini, followed by the tfic command.
    configmap = next(d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"].startswith("tfic-tf-config"))
    assert configmap["data"]["tf_config.py"] == SCRIPT.read_text()
    volume = next(v for v in template["spec"]["volumes"] if v["name"] == "tf-config")
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    mount = next(m for m in c["volumeMounts"] if m["name"] == "tf-config")["mountPath"]
    assert c["command"] == ["/usr/bin/tini", "--", "python", f"{mount}/tf_config.py"]
    assert c["args"][0] == "tfic"
    _assert_runs_multi_worker_training(c["args"][1:], c)
    # What each pod gets: every worker's stable name, and its own index.
    tf_config = _script()
    for index in range(workers):
        config = tf_config.from_environment(
            {
                "JOB_COMPLETION_INDEX": str(index),
                "TFIC_TF_WORKERS": str(workers),
                "TFIC_TF_JOB_NAME": job["metadata"]["name"],
                "TFIC_TF_SUBDOMAIN": template["spec"]["subdomain"],
                "TFIC_TF_PORT": str(port),
                "TFIC_TF_NAMESPACE": NAMESPACE,
            }
        )
        hosts = config["cluster"]["worker"]
        assert hosts[index] == f"tfic-train-{index}.tfic-train-workers.{NAMESPACE}.svc:{port}"
        assert config["task"] == {"type": "worker", "index": index}


def test_tfjob_runs_multi_worker_training() -> None:
    job = find(render("training/tfjob"), "TFJob", "tfic-train")
    replicas = job["spec"]["tfReplicaSpecs"]
    assert set(replicas) <= {"Chief", "Worker", "PS", "Evaluator"}
    # No Chief: worker 0 is the chief and writes the model (trainer_svc.training.strategy.is_chief).
    assert "Chief" not in replicas and replicas["Worker"]["replicas"] >= 2
    assert replicas["Worker"]["restartPolicy"] in ("OnFailure", "Never", "ExitCode")
    # The training operator looks for the container named "tensorflow" and its port "tfjob-port".
    c = container(job, "tensorflow")
    assert container_port(c, "tfjob-port") == 2222
    assert "command" not in c, "the image's ENTRYPOINT (tini -- tfic) runs the args"
    _assert_runs_multi_worker_training(c["args"], c)


@pytest.mark.parametrize("name", ["training/indexed-job", "training/tfjob"])
def test_training_pods_use_the_services_volumes_and_network_policy(name: str) -> None:
    base = render("base")
    claims = {d["metadata"]["name"] for d in of_kind(base, "PersistentVolumeClaim")}
    inference_claims = {
        v["persistentVolumeClaim"]["claimName"]
        for v in pod_templates(find(base, "Deployment", "tfic-inference"))[0]["spec"]["volumes"]
        if "persistentVolumeClaim" in v
    }
    policy = find(base, "NetworkPolicy", "tfic-training")
    selector = policy["spec"]["podSelector"]["matchLabels"]
    for workload in render(name):
        for template in pod_templates(workload):
            used = {
                v["persistentVolumeClaim"]["claimName"]
                for v in template["spec"]["volumes"]
                if "persistentVolumeClaim" in v
            }
            assert used <= claims and inference_claims <= used, "workers publish to the models volume inference reads"
            labels = template["metadata"]["labels"]
            assert matches(selector, labels)
            assert any(
                matches(p["podSelector"]["matchLabels"], labels) for r in policy["spec"]["ingress"] for p in r["from"]
            )
