"""The production checklist of docs/deploy.md, on every rendered overlay x component combination: rollouts and
drains keep serving, images are pullable and pinned, auth fails closed, the network is narrowed, threads fit
the guaranteed CPUs, autoscaling is smoothed, training resumes and is bounded."""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from deploy_support import (
    K8S,
    KUSTOMIZATIONS,
    REPO,
    Obj,
    container,
    container_env,
    find,
    kustomize,
    matches,
    of_kind,
    parse_cli,
    pod_templates,
    pre_stop_seconds,
    render,
    split_image,
)

NAMESPACE_LABELS = {"kubernetes.io/metadata.name": "tfic"}
APPS = tuple(k for k in KUSTOMIZATIONS if k.startswith("overlays/"))
PRODUCTION_APPS = tuple(k for k in APPS if not k.startswith("overlays/dev"))
TRAINING_JOBS = tuple(k for k in KUSTOMIZATIONS if k.startswith("training/"))
PINNED = tuple(k for k in KUSTOMIZATIONS if k != "base" and not k.startswith("overlays/dev"))
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
# Seconds from a pod's deletion until kube-proxy, Ingress controllers and load balancers have dropped it.
ENDPOINT_PROPAGATION = 5.0


def _gpu(docs: list[Obj]) -> bool:
    return "nvidia.com/gpu" in str(container(find(docs, "Deployment", "tfic-inference"), "inference")["resources"])


def _replicas_floor(docs: list[Obj], deployment: str) -> int:
    """The fewest replicas the autoscaler (HPA, or KEDA's ScaledObject) keeps; the Deployment's own count without."""
    for hpa in of_kind(docs, "HorizontalPodAutoscaler"):
        if hpa["spec"]["scaleTargetRef"]["name"] == deployment:
            return int(hpa["spec"].get("minReplicas", 1))
    for scaled in of_kind(docs, "ScaledObject"):
        if scaled["spec"]["scaleTargetRef"]["name"] == deployment:
            return int(scaled["spec"]["minReplicaCount"])
    return int(find(docs, "Deployment", deployment)["spec"].get("replicas", 1))


# ------------------------------------------------------------------------------------ rollouts and drains


@pytest.mark.parametrize("name", APPS)
def test_every_serving_pod_keeps_serving_until_its_endpoints_are_gone(name: str) -> None:
    """The gateway sleeps in preStop (uvicorn closes its listener at once on SIGTERM); inference drains in-process
    (NOT_SERVING while answering). Either way the pod serves past endpoint propagation, within its grace."""
    docs = render(name)
    gateway = container(find(docs, "Deployment", "tfic-gateway"), "gateway")
    sleep = pre_stop_seconds(gateway)
    assert sleep >= ENDPOINT_PROPAGATION, "the gateway needs a preStop delay"
    args = parse_cli(list(gateway["args"]), container_env(docs, gateway))
    grace = find(docs, "Deployment", "tfic-gateway")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= sleep + args.shutdown_grace_seconds + 5
    # The gateway's image runs `sleep` itself: it must exist there (coreutils, Debian-based images).
    dockerfile = (REPO / "deploy" / "docker" / "Dockerfile").read_text()
    assert re.search(r"ARG PYTHON_IMAGE=python:3\.\d+-slim-(bookworm|trixie)", dockerfile)

    inference = container(find(docs, "Deployment", "tfic-inference"), "inference")
    assert pre_stop_seconds(inference) == 0, "a preStop would only postpone the NOT_SERVING that drains the pod"
    inference_args = parse_cli(list(inference["args"]), container_env(docs, inference))
    assert inference_args.drain_seconds >= ENDPOINT_PROPAGATION


@pytest.mark.parametrize("name", PRODUCTION_APPS)
def test_a_node_drain_and_a_rollout_keep_a_replica_serving(name: str) -> None:
    docs = render(name)
    for deployment in ("tfic-inference", "tfic-gateway"):
        pdb = next(
            p
            for p in of_kind(docs, "PodDisruptionBudget")
            if matches(
                p["spec"]["selector"]["matchLabels"],
                pod_templates(find(docs, "Deployment", deployment))[0]["metadata"]["labels"],
            )
        )
        floor = _replicas_floor(docs, deployment)
        assert pdb["spec"]["maxUnavailable"] == 1 and floor >= 2, f"{deployment}: one eviction would leave nothing"
        rolling = find(docs, "Deployment", deployment)["spec"]["strategy"]["rollingUpdate"]
        if deployment == "tfic-inference" and _gpu(docs):
            # A full GPU pool has no room for a surge pod: replace one at a time.
            assert (rolling["maxSurge"], rolling["maxUnavailable"]) == (0, 1)
            assert floor - rolling["maxUnavailable"] >= 1
        else:
            assert rolling["maxUnavailable"] == 0 and rolling["maxSurge"] not in (0, "0%")


@pytest.mark.parametrize("name", APPS)
def test_new_inference_pods_get_gateway_traffic_within_seconds(name: str) -> None:
    """The gateway re-resolves the headless Service when a connection ages out; ages are short, so a pod the
    autoscaler adds gets traffic within about that long (not 120 s)."""
    from gateway.client import DNS_MIN_RESOLUTION_INTERVAL_MS

    docs = render(name)
    inference = container(find(docs, "Deployment", "tfic-inference"), "inference")
    args = parse_cli(list(inference["args"]), container_env(docs, inference))
    assert args.max_connection_age_seconds <= 30
    assert DNS_MIN_RESOLUTION_INTERVAL_MS <= 5000
    gateway = container(find(docs, "Deployment", "tfic-gateway"), "gateway")
    target = parse_cli(list(gateway["args"]), container_env(docs, gateway)).inference
    assert (
        target.startswith("dns:///") and find(docs, "Service", target[7:].split(":")[0])["spec"]["clusterIP"] == "None"
    )


# ------------------------------------------------------------------------------------ images


@pytest.mark.parametrize("name", PINNED)
def test_every_image_is_pullable_and_pinned_by_digest(name: str) -> None:
    """Outside dev every container names a registry, a tag and a digest (the shipped digests are placeholders:
    scripts/pin_images.py writes the real ones, and --check refuses the placeholders)."""
    for workload in render(name):
        for template in pod_templates(workload):
            for c in template["spec"]["containers"]:
                repository, tag, digest = split_image(c["image"])
                host = repository.split("/")[0]
                assert "/" in repository and ("." in host or ":" in host), f"{c['name']}: no registry: {c['image']}"
                assert tag and DIGEST.match(digest), f"{c['name']}: not pinned by digest: {c['image']}"


@pytest.mark.parametrize("name", [k for k in APPS if "models-s3" in k])
def test_model_sync_sidecars_run_their_pods_image(name: str) -> None:
    """gpu + models-s3 rendered `image: tfic-inference` on the sidecar (the GPU rename ran before it existed)."""
    docs = render(name)
    for kind, workload, main in (
        ("Deployment", "tfic-inference", "inference"),
        ("StatefulSet", "tfic-trainer", "trainer"),
    ):
        obj = find(docs, kind, workload)
        assert container(obj, "model-sync")["image"] == container(obj, main)["image"]
    if _gpu(docs):
        assert "tfic-inference-gpu" in container(find(docs, "Deployment", "tfic-inference"), "model-sync")["image"]


# ------------------------------------------------------------------------------------ secrets


def _secret_refs(c: Obj) -> list[tuple[str, str | None, bool]]:
    """(Secret, key or None for envFrom, optional) for each Secret a container reads."""
    refs = []
    for env in c.get("env", []):
        ref = env.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            refs.append((ref["name"], ref["key"], bool(ref.get("optional"))))
    for source in c.get("envFrom", []):
        if "secretRef" in source:
            refs.append((source["secretRef"]["name"], None, bool(source["secretRef"].get("optional"))))
    return refs


@pytest.mark.parametrize("name", APPS)
def test_auth_secrets_fail_closed_outside_dev(name: str) -> None:
    docs = render(name)
    dev = name.startswith("overlays/dev")
    tokens = {
        ("tfic-gateway", "gateway", "TFIC_GATEWAY_AUTH_TOKEN"),
        ("tfic-trainer", "trainer", "TFIC_TRAINER_AUTH_TOKEN"),
    }
    for workload, name_, variable in tokens:
        kind = "StatefulSet" if workload == "tfic-trainer" else "Deployment"
        c = container(find(docs, kind, workload), name_)
        ref = {e["name"]: e for e in c["env"]}[variable]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "tfic-auth"
        assert bool(ref.get("optional")) is dev, f"{variable}: optional only in dev"
    if not dev:
        for workload in docs:
            for template in pod_templates(workload):
                for c in template["spec"]["containers"]:
                    for secret, key, optional in _secret_refs(c):
                        if secret == "tfic-auth":
                            assert not optional, f"{c['name']}: {key} must not be optional"


@pytest.mark.parametrize("name", [k for k in APPS if "models-s3" in k])
def test_the_pull_sidecars_get_read_only_credentials(name: str) -> None:
    docs = render(name)
    inference = pod_templates(find(docs, "Deployment", "tfic-inference"))[0]["spec"]["containers"]
    read = {s for c in inference for s, _key, _opt in _secret_refs(c) if s.startswith("tfic-s3")}
    trainer = container(find(docs, "StatefulSet", "tfic-trainer"), "model-sync")
    write = {s for s, _key, _opt in _secret_refs(trainer)}
    assert read == {"tfic-s3-read"} and write == {"tfic-s3"}
    templates = {p.stem.removesuffix(".secret"): yaml.safe_load(p.read_text()) for p in (K8S / "secrets").glob("s3*")}
    assert templates["s3-read"]["metadata"]["name"] == "tfic-s3-read"
    assert set(templates["s3-read"]["stringData"]) == set(templates["s3"]["stringData"])


# ------------------------------------------------------------------------------------ network policies


@dataclass(frozen=True)
class Peer:
    """One end of a connection: a pod (labels, its namespace's labels, named ports) or an outside address."""

    labels: Mapping[str, str] = field(default_factory=dict)
    namespace: Mapping[str, str] = field(default_factory=lambda: NAMESPACE_LABELS)
    ports: Mapping[str, int] = field(default_factory=dict)
    ip: str | None = None  # an address outside the cluster (no pod)


def _selects(selector: Obj | None, labels: Mapping[str, str]) -> bool:
    if selector is None:
        return True
    if not matches(selector.get("matchLabels", {}), labels):
        return False
    for expression in selector.get("matchExpressions", []):
        value = labels.get(expression["key"])
        operator = expression["operator"]
        if operator == "In" and value not in expression["values"]:
            return False
        if operator == "NotIn" and value in expression["values"]:
            return False
        if operator == "Exists" and value is None:
            return False
        if operator == "DoesNotExist" and value is not None:
            return False
    return True


def _peer_matches(peer: Obj, other: Peer, local_namespace: Mapping[str, str]) -> bool:
    if "ipBlock" in peer:
        if other.ip is None:
            return False  # pod traffic is selected by pod and namespace selectors (cluster CIDRs are excluded)
        block = peer["ipBlock"]
        address = ipaddress.ip_address(other.ip)
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(e) for e in block.get("except", [])
        )
    if other.ip is not None:
        return False
    if "namespaceSelector" in peer:
        namespace_ok = _selects(peer["namespaceSelector"], other.namespace)
    else:
        namespace_ok = dict(other.namespace) == dict(local_namespace)
    return namespace_ok and _selects(peer.get("podSelector"), other.labels)


def _port_matches(rule: Obj, port: int, protocol: str, destination: Peer) -> bool:
    if "ports" not in rule:
        return True
    for p in rule["ports"]:
        if p.get("protocol", "TCP") != protocol:
            continue
        wanted = p["port"]
        if isinstance(wanted, str):
            wanted = destination.ports.get(wanted)
        if wanted == port:
            return True
    return False


def allowed(
    docs: list[Obj], source: Peer, destination: Peer, port: int, protocol: str = "TCP", *, egress: bool = True
) -> bool:
    """Whether the namespace's NetworkPolicies let ``source`` open ``port`` on ``destination`` (Kubernetes'
    semantics: policies are additive; a pod selected by a policy of a direction is isolated in it).
    ``egress=False`` asks the destination's ingress rules alone (as if the source's egress were open)."""
    policies = of_kind(docs, "NetworkPolicy")

    def direction(pod: Peer, kind: str, key: str, other: Peer, target: Peer) -> bool:
        if pod.ip is not None or dict(pod.namespace) != NAMESPACE_LABELS:
            return True  # not a pod of this namespace: its own namespace's policies decide
        chosen = [
            p for p in policies if kind in p["spec"]["policyTypes"] and _selects(p["spec"]["podSelector"], pod.labels)
        ]
        if not chosen:
            return True
        for policy in chosen:
            for rule in policy["spec"].get(kind.lower(), []):
                peers = rule.get(key)
                peer_ok = peers is None or any(_peer_matches(p, other, pod.namespace) for p in peers)
                if peer_ok and _port_matches(rule, port, protocol, target):
                    return True
        return False

    return (not egress or direction(source, "Egress", "to", destination, destination)) and direction(
        destination, "Ingress", "from", source, destination
    )


def _pod(docs: list[Obj], kind: str, name: str) -> Peer:
    template = pod_templates(find(docs, kind, name))[0]
    ports = {p["name"]: int(p["containerPort"]) for c in template["spec"]["containers"] for p in c.get("ports", [])}
    return Peer(labels=template["metadata"]["labels"], ports=ports)


MONITORING = Peer(
    labels={"app.kubernetes.io/name": "prometheus"}, namespace={"kubernetes.io/metadata.name": "monitoring"}
)
DNS = Peer(labels={"k8s-app": "kube-dns"}, namespace={"kubernetes.io/metadata.name": "kube-system"})
STRANGER = Peer(labels={"app": "something-else"})  # another pod of the namespace
OBJECT_STORAGE = Peer(ip="52.216.0.10")  # an S3 address
INTERNET_CALLER = Peer(ip="203.0.113.7")


@pytest.mark.parametrize("name", PRODUCTION_APPS)
def test_network_policies_admit_only_who_needs_each_port(name: str) -> None:
    docs = render(name)
    gateway = _pod(docs, "Deployment", "tfic-gateway")
    inference = _pod(docs, "Deployment", "tfic-inference")
    trainer = _pod(docs, "StatefulSet", "tfic-trainer")
    inference_client = Peer(labels={"tfic.io/inference-client": "true"})
    trainer_client = Peer(labels={"tfic.io/trainer-client": "true"})
    grpc_i, grpc_t = inference.ports["grpc"], trainer.ports["grpc"]

    assert allowed(docs, INTERNET_CALLER, gateway, gateway.ports["http"])
    assert allowed(docs, gateway, inference, grpc_i)
    assert allowed(docs, inference_client, inference, grpc_i)
    assert not allowed(docs, STRANGER, inference, grpc_i)
    assert not allowed(docs, trainer_client, inference, grpc_i)
    assert allowed(docs, trainer_client, trainer, grpc_t)
    for caller in (STRANGER, gateway, inference, inference_client):
        assert not allowed(docs, caller, trainer, grpc_t), caller
    # Each port's own ingress rules keep them out too, whatever their egress (defence in depth).
    for caller, pod, port in (
        (STRANGER, inference, grpc_i),
        (trainer_client, inference, grpc_i),
        (STRANGER, trainer, grpc_t),
        (gateway, trainer, grpc_t),
        (inference_client, trainer, grpc_t),
        (inference, trainer, grpc_t),
        (STRANGER, gateway, gateway.ports["metrics"]),
        (STRANGER, trainer, trainer.ports["metrics"]),
        (STRANGER, inference, inference.ports["metrics"]),
    ):
        assert not allowed(docs, caller, pod, port, egress=False), (caller, pod, port)
    for pod in (gateway, inference, trainer):
        assert allowed(docs, MONITORING, pod, pod.ports["metrics"])
        assert not allowed(docs, STRANGER, pod, pod.ports["metrics"])
        assert allowed(docs, pod, DNS, 53, "UDP") and allowed(docs, pod, DNS, 53, "TCP")
    assert not allowed(docs, INTERNET_CALLER, gateway, gateway.ports["metrics"])
    assert not allowed(docs, MONITORING, inference, grpc_i)
    # Egress: the gateway reaches inference only; object storage is for those that read or write it.
    assert not allowed(docs, gateway, trainer, grpc_t)
    assert not allowed(docs, gateway, OBJECT_STORAGE, 443)
    assert allowed(docs, trainer, OBJECT_STORAGE, 443)
    assert not allowed(docs, trainer, OBJECT_STORAGE, 80)
    assert allowed(docs, inference, OBJECT_STORAGE, 443) is ("models-s3" in name)


@pytest.mark.parametrize("name", TRAINING_JOBS)
def test_training_workers_reach_each_other_and_object_storage_only(name: str) -> None:
    docs = render("overlays/cpu") + render(name)
    workload = next(d for d in docs if d["kind"] in ("Job", "TFJob"))
    template = pod_templates(workload)[0]
    worker = Peer(
        labels=template["metadata"]["labels"],
        ports={p["name"]: int(p["containerPort"]) for c in template["spec"]["containers"] for p in c.get("ports", [])},
    )
    port = next(iter(worker.ports.values()))
    assert allowed(docs, worker, worker, port)
    assert not allowed(docs, STRANGER, worker, port)
    assert allowed(docs, worker, OBJECT_STORAGE, 443)
    assert not allowed(docs, worker, _pod(docs, "Deployment", "tfic-inference"), 8500)


# ------------------------------------------------------------------------------------ resources


@pytest.mark.parametrize("name", PRODUCTION_APPS)
def test_inference_threads_fit_the_guaranteed_cpus(name: str) -> None:
    """Guaranteed QoS with whole CPUs, and never more compute threads than them (no CFS throttling)."""
    docs = render(name)
    c = container(find(docs, "Deployment", "tfic-inference"), "inference")
    requests, limits = c["resources"]["requests"], c["resources"]["limits"]
    assert requests == limits, "Guaranteed QoS: requests equal limits"
    cpus = requests["cpu"]
    assert re.fullmatch(r"\d+", str(cpus)), f"whole CPUs (the static CPU manager pins only those): {cpus}"
    args = parse_cli(list(c["args"]), container_env(docs, c))
    assert args.tf_intra_op_threads >= 1 and args.decode_workers >= 1
    assert args.tf_intra_op_threads + args.decode_workers <= int(cpus)
    assert args.tf_inter_op_threads == args.num_batch_threads


# ------------------------------------------------------------------------------------ autoscaling


def _adapter_query(metric: str) -> str:
    values = yaml.safe_load((K8S / "prometheus-adapter" / "values.yaml").read_text())
    return str(next(r["metricsQuery"] for r in values["rules"]["custom"] if r["name"]["as"] == metric))


@pytest.mark.parametrize("name", PRODUCTION_APPS)
def test_inference_scales_on_a_smoothed_signal_with_a_window(name: str) -> None:
    docs = render(name)
    hpas = [h for h in of_kind(docs, "HorizontalPodAutoscaler") if h["metadata"]["name"] == "tfic-inference"]
    scaled = of_kind(docs, "ScaledObject")
    assert len(hpas) + len(scaled) == 1
    if hpas:
        behavior = hpas[0]["spec"]["behavior"]
        targets = {m["pods"]["metric"]["name"]: m["pods"]["target"]["averageValue"] for m in hpas[0]["spec"]["metrics"]}
        for metric in targets:
            assert "avg_over_time(<<.Series>>" in _adapter_query(metric), metric
    else:
        spec = scaled[0]["spec"]
        behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        targets = {t["name"]: t["metadata"]["threshold"] for t in spec["triggers"]}
        for trigger in spec["triggers"]:
            assert "avg_over_time(" in trigger["metadata"]["query"]
        if _gpu(docs):  # keda-gpu: the GPU replica's thresholds and bounds, as components/gpu's HPA
            hpa = yaml.safe_load((K8S / "components" / "gpu" / "hpa-gpu.yaml").read_text())["spec"]
            assert sorted(targets.values()) == sorted(m["pods"]["target"]["averageValue"] for m in hpa["metrics"])
            assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (hpa["minReplicas"], hpa["maxReplicas"])
            assert spec["fallback"]["replicas"] <= spec["maxReplicaCount"]
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] >= 60
    assert all(p["periodSeconds"] >= 60 for p in behavior["scaleUp"]["policies"])
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 300


def test_gpu_with_plain_keda_is_not_what_the_docs_offer() -> None:
    """components/keda carries the CPU thresholds; keda-gpu is the GPU variant (and includes keda)."""
    data = yaml.safe_load((K8S / "components" / "keda-gpu" / "kustomization.yaml").read_text())
    assert data["components"] == ["../keda"]
    assert not any("gpu+components/keda" in k and "keda-gpu" not in k for k in KUSTOMIZATIONS)


# ------------------------------------------------------------------------------------ training


def _worker(docs: list[Obj]) -> tuple[Obj, Obj]:
    workload = next(d for d in docs if d["kind"] in ("Job", "TFJob"))
    return workload, pod_templates(workload)[0]["spec"]["containers"][0]


@pytest.mark.parametrize("name", TRAINING_JOBS)
def test_training_resumes_and_is_bounded(name: str) -> None:
    docs = render(name)
    workload, c = _worker(docs)
    argv = list(c["args"])
    argv = argv[1:] if argv[0] == "tfic" else argv  # the Indexed Job's entry point runs `tfic ...`
    args = parse_cli(argv, {})
    assert args.command == "train" and args.resume is True
    deadline = workload["spec"].get("activeDeadlineSeconds") or workload["spec"]["runPolicy"]["activeDeadlineSeconds"]
    assert 0 < deadline <= 7 * 86400
    gpu = "training-gpu" in name
    assert ("nvidia.com/gpu" in c["resources"]["limits"]) is gpu
    assert ("tfic-trainer-gpu" in c["image"]) is gpu
    spec = pod_templates(workload)[0]["spec"]
    if gpu:
        assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        assert spec["tolerations"][0]["key"] == "nvidia.com/gpu"
    kueue = "training-kueue" in name
    assert (workload["metadata"]["labels"].get("kueue.x-k8s.io/queue-name") == "tfic-training") is kueue
    suspended = workload["spec"].get("suspend", workload["spec"].get("runPolicy", {}).get("suspend", False))
    assert suspended is kueue, "Kueue admits the whole gang by unsuspending it"


def test_failed_training_jobs_alert() -> None:
    rules = {
        r["alert"]: r["expr"]
        for g in find(render("overlays/cpu"), "PrometheusRule", "tfic")["spec"]["groups"]
        for r in g["rules"]
    }
    failed = rules["TficDistributedTrainingFailed"]
    assert "kube_job_failed" in failed and 'condition="true"' in failed
    job_names = {d["metadata"]["name"] for t in TRAINING_JOBS for d in render(t) if d["kind"] in ("Job", "TFJob")}
    pattern = re.search(r'job_name=~"([^"]+)"', failed)
    assert pattern and all(re.fullmatch(pattern.group(1), n) for n in job_names)
    assert "kube_job_status_failed" in rules["TficTrainingPodsFailing"]


# ------------------------------------------------------------------------------------ pinning


def _pin_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "pin_images.py"), *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_pin_images_writes_digests_that_render_and_check_refuses_placeholders(tmp_path: Path) -> None:
    tree = tmp_path / "k8s"
    shutil.copytree(K8S, tree)
    overlay = tree / "overlays" / "gpu"
    checked = _pin_script("--check", str(overlay), str(tree / "overlays" / "cpu"))
    assert checked.returncode == 1 and "placeholder digest" in checked.stderr
    digests = {n: "sha256:" + f"{i + 1:x}" * 64 for i, n in enumerate(("inf", "gw", "tr"))}
    images = {
        "tfic-inference-gpu": f"reg.example.org/ml/tfic-inference-gpu:2.0@{digests['inf']}",
        "tfic-inference": f"reg.example.org/ml/tfic-inference-gpu:2.0@{digests['inf']}",
        "tfic-gateway": f"reg.example.org/ml/tfic-gateway@{digests['gw']}",
        "tfic-trainer": f"reg.example.org/ml/tfic-trainer:2.0@{digests['tr']}",
    }
    done = _pin_script(str(overlay), *(f"{k}={v}" for k, v in images.items()))
    assert done.returncode == 0, done.stderr
    assert "# components/gpu renamed" in (overlay / "kustomization.yaml").read_text(), "comments are kept"
    assert _pin_script("--check", str(overlay)).returncode == 0
    docs = kustomize(overlay)
    used = {c["name"]: c["image"] for d in docs for t in pod_templates(d) for c in t["spec"]["containers"]}
    assert used["inference"] == images["tfic-inference-gpu"]
    assert used["gateway"] == images["tfic-gateway"], "a reference without a tag drops the old tag"
    assert used["trainer"] == images["tfic-trainer"]
    bad = _pin_script(str(overlay), "tfic-gateway=reg.example.org/ml/tfic-gateway:2.0")
    assert bad.returncode == 2 and "@sha256:" in bad.stderr
