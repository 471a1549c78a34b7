"""What must hold between the manifests and the services: ports, probes and their health services, settings
variables, shutdown timing, labels and selectors, references, autoscaling, GPUs and pod security."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from deploy_support import (
    K8S,
    KUSTOMIZATIONS,
    OVERLAYS,
    SECRET_TEMPLATES,
    SERVICES,
    Obj,
    Service,
    cli_env_vars,
    container,
    container_env,
    container_port,
    exported_metrics,
    find,
    matches,
    metric_names_in,
    of_kind,
    parse_cli,
    pod_templates,
    pre_stop_seconds,
    render,
    require,
    split_image,
)

SERVICE_IDS = [s.name for s in SERVICES]
APPS = tuple(f"overlays/{o}" for o in OVERLAYS)


def _workload(docs: list[Obj], service: Service) -> Obj:
    return find(docs, service.kind, service.workload)


def _cli_args(docs: list[Obj], service: Service) -> tuple[Obj, Any]:
    """The service's container and the arguments ``tfic`` parses in it (image ENTRYPOINT tfic + args + env)."""
    c = container(_workload(docs, service), service.container)
    assert "command" not in c, "the image's ENTRYPOINT (tini -- tfic) must stay in force"
    args = parse_cli(list(c["args"]), container_env(docs, c))
    assert (args.command, args.service) == ("serve", service.name)
    return c, args


# ------------------------------------------------------------------------------------- ports and probes


@pytest.mark.parametrize("overlay", APPS)
@pytest.mark.parametrize("service", SERVICES, ids=SERVICE_IDS)
def test_ports_match_the_service_settings(overlay: str, service: Service) -> None:
    require(service)
    docs = render(overlay)
    c, args = _cli_args(docs, service)
    main_port = "http" if service.http_ready else "grpc"
    assert container_port(c, main_port) == args.port
    if service.metrics_port_env:
        assert container_port(c, "metrics") == args.metrics_port
    # The Services in front route to those ports by name.
    for svc in of_kind(docs, "Service"):
        if matches(svc["spec"].get("selector", {}), pod_templates(_workload(docs, service))[0]["metadata"]["labels"]):
            names = {p["name"] for p in c["ports"]}
            for port in svc["spec"]["ports"]:
                assert port["targetPort"] in names, f"Service {svc['metadata']['name']} targets {port['targetPort']}"


@pytest.mark.parametrize("overlay", APPS)
@pytest.mark.parametrize("service", SERVICES, ids=SERVICE_IDS)
def test_probes_ask_the_real_health_services(overlay: str, service: Service) -> None:
    require(service)
    docs = render(overlay)
    c, args = _cli_args(docs, service)
    if service.grpc_service is not None:
        for probe in ("startupProbe", "livenessProbe"):
            assert c[probe]["grpc"] == {"port": args.port, "service": ""}, probe
        assert c["readinessProbe"]["grpc"] == {"port": args.port, "service": service.grpc_service}
        _assert_server_registers_health(service)
    else:
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert c[probe]["httpGet"]["port"] in ("http", args.port)
        assert c["readinessProbe"]["httpGet"]["path"] == service.http_ready
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"


def _assert_server_registers_health(service: Service) -> None:
    """The server module's own list of health services holds the readiness probe's."""
    import importlib

    if service.name == "inference":
        names = importlib.import_module("inference_svc.server").READINESS_SERVICES
    else:
        names = importlib.import_module("trainer_svc.service.server").HEALTH_SERVICES
    assert service.grpc_service in names, f"{service.name} health services: {names}"


def test_probes_and_scrapes_need_no_token() -> None:
    """With the optional bearer tokens set, kubelet's probes and Prometheus' scrapes still get through."""
    from gateway.middleware import PUBLIC_PATHS
    from tfic.grpc_security import EXEMPT_PREFIXES

    assert "/grpc.health.v1.Health/" in EXEMPT_PREFIXES
    docs = render("overlays/cpu")
    gateway = container(find(docs, "Deployment", "tfic-gateway"), "gateway")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert gateway[probe]["httpGet"]["path"] in PUBLIC_PATHS
    monitor = find(docs, "ServiceMonitor", "tfic-gateway")
    assert all(e["path"] in PUBLIC_PATHS for e in monitor["spec"]["endpoints"])


@pytest.mark.parametrize("overlay", APPS)
def test_termination_grace_outlasts_the_drain(overlay: str) -> None:
    docs = render(overlay)
    for service in SERVICES:
        require(service)
        _c, args = _cli_args(docs, service)
        grace = _workload(docs, service)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        if service.name == "inference":
            needed = args.drain_seconds + args.shutdown_grace_seconds
        elif service.name == "trainer":
            from trainer_svc.service.settings import TrainerSettings

            shutdown = TrainerSettings.__dataclass_fields__["shutdown_grace_seconds"].default
            needed = args.stop_grace_seconds + float(shutdown)  # type: ignore[arg-type]
        else:
            needed = args.shutdown_grace_seconds
        # kubelet counts a preStop hook's time against the grace period too.
        needed += pre_stop_seconds(_c)
        assert grace >= needed + 5, f"{service.name}: terminationGracePeriodSeconds {grace} vs drain {needed}"


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_settings_variables_are_real(name: str) -> None:
    """Every TFIC_* variable a manifest sets is one the service's CLI reads (no silently ignored typo)."""
    docs = render(name)
    by_container = {s.container: s for s in SERVICES}
    for workload in of_kind(docs, "Deployment", "StatefulSet"):
        for template in pod_templates(workload):
            for c in template["spec"]["containers"]:
                if c["name"] not in by_container:
                    continue  # a sidecar (components/models-s3): test_deploy_model_sync checks it
                service = by_container[c["name"]]
                require(service)
                known = cli_env_vars(service)
                names = set(container_env(docs, c)) | {e["name"] for e in c.get("env", [])}
                unknown = {n for n in names if n.startswith("TFIC_")} - known
                assert not unknown, f"{service.name} does not read {sorted(unknown)}"


# ----------------------------------------------------------------------------- labels, selectors, refs


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_selectors_match_their_pods(name: str) -> None:
    docs = render(name)
    workloads = [d for d in docs if pod_templates(d)]
    pods = {d["metadata"]["name"]: pod_templates(d)[0]["metadata"]["labels"] for d in workloads}
    for w in of_kind(docs, "Deployment", "StatefulSet"):
        assert matches(w["spec"]["selector"]["matchLabels"], pods[w["metadata"]["name"]])
    for svc in of_kind(docs, "Service"):
        selected = [n for n, labels in pods.items() if matches(svc["spec"]["selector"], labels)]
        assert len(selected) == 1, f"Service {svc['metadata']['name']} selects {selected}"
    for pdb in of_kind(docs, "PodDisruptionBudget"):
        selected = [n for n, labels in pods.items() if matches(pdb["spec"]["selector"]["matchLabels"], labels)]
        assert len(selected) == 1, f"PDB {pdb['metadata']['name']} selects {selected}"
    for policy in of_kind(docs, "NetworkPolicy"):
        selector = policy["spec"]["podSelector"].get("matchLabels", {})
        if selector:
            selected = [w for w in workloads if matches(selector, pod_templates(w)[0]["metadata"]["labels"])]
            # The training pods live in deploy/k8s/training (test_deploy_training checks that policy); the
            # labelled clients' policies select the users' own pods (test_deploy_production checks them).
            client = set(selector) <= {"tfic.io/inference-client", "tfic.io/trainer-client"}
            assert selected or client or selector == {"app.kubernetes.io/component": "training"}, policy["metadata"][
                "name"
            ]
            for w in selected:
                _assert_named_ports_exist(policy, w)


def _assert_named_ports_exist(policy: Obj, workload: Obj) -> None:
    names = {p["name"] for t in pod_templates(workload) for c in t["spec"]["containers"] for p in c.get("ports", [])}
    for rule in policy["spec"].get("ingress", []):
        for port in rule.get("ports", []):
            if isinstance(port["port"], str):
                assert port["port"] in names, f"{policy['metadata']['name']}: no port {port['port']!r}"


@pytest.mark.parametrize("overlay", APPS)
def test_statefulset_and_monitors_point_at_real_services(overlay: str) -> None:
    docs = render(overlay)
    services = {s["metadata"]["name"]: s for s in of_kind(docs, "Service")}
    for sts in of_kind(docs, "StatefulSet"):
        governing = services[sts["spec"]["serviceName"]]
        assert governing["spec"]["clusterIP"] == "None"
    for monitor in of_kind(docs, "ServiceMonitor"):
        selected = [
            s for s in services.values() if matches(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])
        ]
        for endpoint in monitor["spec"]["endpoints"]:
            with_port = [s for s in selected if endpoint["port"] in {p["name"] for p in s["spec"]["ports"]}]
            # Exactly one Service exposes the port, so no pod is scraped twice.
            assert len(with_port) == 1, f"{monitor['metadata']['name']}: {[s['metadata']['name'] for s in with_port]}"


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_references_resolve(name: str) -> None:
    """ConfigMaps, Secrets, PVCs and ServiceAccounts a pod refers to exist (in the render, the base, or as
    Secret templates users create from deploy/k8s/secrets)."""
    docs = render(name)
    available = docs + render("base")
    configmaps = {d["metadata"]["name"] for d in available if d["kind"] == "ConfigMap"}
    claims = {d["metadata"]["name"] for d in available if d["kind"] == "PersistentVolumeClaim"}
    accounts = {d["metadata"]["name"] for d in available if d["kind"] == "ServiceAccount"}
    secrets: dict[str, set[str]] = {}
    for path in SECRET_TEMPLATES:
        for s in yaml.safe_load_all(path.read_text()):
            secrets[s["metadata"]["name"]] = set(s.get("stringData", {})) | set(s.get("data", {}))
    for workload in docs:
        for template in pod_templates(workload):
            spec = template["spec"]
            assert spec["serviceAccountName"] in accounts
            claim_templates = {t["metadata"]["name"] for t in workload["spec"].get("volumeClaimTemplates", [])}
            volumes = {v["name"] for v in spec.get("volumes", [])} | claim_templates
            for v in spec.get("volumes", []):
                if "persistentVolumeClaim" in v:
                    assert v["persistentVolumeClaim"]["claimName"] in claims
                if "configMap" in v:
                    assert v["configMap"]["name"] in configmaps
                if "secret" in v:
                    assert v["secret"]["secretName"] in secrets
            for c in spec["containers"]:
                for mount in c.get("volumeMounts", []):
                    assert mount["name"] in volumes, f"{c['name']} mounts unknown volume {mount['name']}"
                for source in c.get("envFrom", []):
                    if "configMapRef" in source:
                        assert source["configMapRef"]["name"] in configmaps
                    else:
                        assert source["secretRef"]["name"] in secrets
                for env in c.get("env", []):
                    ref = env.get("valueFrom", {}).get("secretKeyRef")
                    if ref is not None:
                        assert ref["key"] in secrets[ref["name"]], f"{ref} not in the Secret templates"


# ------------------------------------------------------------------------------------------ autoscaling


def _adapter_rules() -> dict[str, str]:
    """prometheus-adapter's custom metric name → the series its rule reads (values.yaml, rules.custom)."""
    import re

    values = yaml.safe_load((K8S / "prometheus-adapter" / "values.yaml").read_text())
    produced = {}
    for rule in values["rules"]["custom"]:
        series = rule["seriesQuery"].split("{")[0].strip("'\" ")
        name = re.sub(rule["name"]["matches"], rule["name"]["as"].replace("${", "\\g<").replace("}", ">"), series)
        assert {"namespace", "pod"} <= set(rule["resources"]["overrides"]), "per-pod metrics need namespace and pod"
        produced[name] = series
    return produced


@pytest.mark.parametrize("overlay", APPS)
def test_hpa_metrics_are_exported_by_the_services(overlay: str) -> None:
    docs = render(overlay)
    rules = _adapter_rules()
    for hpa in of_kind(docs, "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        owner = next(s for s in SERVICES if s.workload == target["name"])
        assert target["kind"] == owner.kind
        require(owner)
        exported = exported_metrics(owner)
        for metric in hpa["spec"]["metrics"]:
            if metric["type"] == "Pods":
                name = metric["pods"]["metric"]["name"]
                assert name in rules, f"no prometheus-adapter rule produces {name}"
                assert rules[name] in exported, f"{owner.name} does not export {rules[name]}"
            else:
                assert metric["type"] == "Resource"


def test_inference_scales_on_queue_depth_or_in_flight() -> None:
    hpa = find(render("overlays/cpu"), "HorizontalPodAutoscaler", "tfic-inference")
    names = {m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"}
    assert names and names <= {"tfic_inference_queue_depth", "tfic_inference_in_flight_requests"}
    gateway = find(render("overlays/cpu"), "HorizontalPodAutoscaler", "tfic-gateway")
    kinds = {m["type"] for m in gateway["spec"]["metrics"]}
    assert kinds == {"Resource", "Pods"}, "the gateway scales on CPU and on its request rate"


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_never_two_autoscalers_on_one_workload(name: str) -> None:
    docs = render(name)
    targets = [d["spec"]["scaleTargetRef"]["name"] for d in of_kind(docs, "HorizontalPodAutoscaler", "ScaledObject")]
    assert len(targets) == len(set(targets)), f"{name}: {targets}"


def test_keda_overlay_replaces_the_inference_hpa() -> None:
    docs = render("overlays/keda")
    scaled = find(docs, "ScaledObject", "tfic-inference")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "tfic-inference"
    assert all(
        h["spec"]["scaleTargetRef"]["name"] != "tfic-inference" for h in of_kind(docs, "HorizontalPodAutoscaler")
    )
    # KEDA's own HPA must not clash with a name the base uses.
    assert scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["name"] not in {
        h["metadata"]["name"] for h in of_kind(render("base"), "HorizontalPodAutoscaler")
    }
    inference = next(s for s in SERVICES if s.name == "inference")
    require(inference)
    exported = exported_metrics(inference)
    for trigger in scaled["spec"]["triggers"]:
        assert trigger["type"] == "prometheus" and trigger["metricType"] == "AverageValue"
        used = metric_names_in(trigger["metadata"]["query"])
        assert used and used <= set(exported), used
        float(trigger["metadata"]["threshold"])


# -------------------------------------------------------------------------------------------------- GPU


def test_gpu_overlay_requests_a_gpu_on_gpu_nodes() -> None:
    docs = render("overlays/gpu")
    deployment = find(docs, "Deployment", "tfic-inference")
    spec = deployment["spec"]["template"]["spec"]
    c = container(deployment, "inference")
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert c["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert spec["nodeSelector"]
    assert any(t["key"] == "nvidia.com/gpu" and t["effect"] == "NoSchedule" for t in spec["tolerations"])
    assert c["image"].split("/")[-1].startswith("tfic-inference-gpu:")
    # Gateway and trainer stay on CPU nodes; the CPU overlay asks for no GPU at all.
    for other in ("tfic-gateway",):
        assert "nvidia.com/gpu" not in str(find(docs, "Deployment", other))
    assert "nvidia.com/gpu" not in str(render("overlays/cpu"))


# ---------------------------------------------------------------------------------- pods in general


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_pods_are_restricted_and_bounded(name: str) -> None:
    """Pod Security "restricted", resource requests and limits, and pinned image tags for every container."""
    for workload in render(name):
        for template in pod_templates(workload):
            spec = template["spec"]
            assert spec["securityContext"]["runAsNonRoot"] is True
            assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
            assert spec.get("automountServiceAccountToken") is False
            for c in spec["containers"]:
                sc = c["securityContext"]
                assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
                assert sc["readOnlyRootFilesystem"] is True
                mounts = {m["mountPath"] for m in c["volumeMounts"]}
                assert "/tmp" in mounts, "a read-only root needs a writable /tmp"
                assert {"cpu", "memory"} <= set(c["resources"]["requests"]) and {"cpu", "memory"} <= set(
                    c["resources"]["limits"]
                )
                image, tag, _digest = split_image(c["image"])
                assert image and tag and tag != "latest", c["image"]


def test_dev_overlay_needs_nothing_but_a_plain_cluster() -> None:
    docs = render("overlays/dev")
    kinds = {d["kind"] for d in docs}
    assert not kinds & {"ServiceMonitor", "PrometheusRule", "ScaledObject", "HorizontalPodAutoscaler"}
    for claim in of_kind(docs, "PersistentVolumeClaim"):
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_model_storage_is_shared_read_write_many_by_default() -> None:
    docs = render("overlays/cpu")
    models = find(docs, "PersistentVolumeClaim", "tfic-models")
    assert models["spec"]["accessModes"] == ["ReadWriteMany"]
    trainer = container(find(docs, "StatefulSet", "tfic-trainer"), "trainer")
    inference = container(find(docs, "Deployment", "tfic-inference"), "inference")
    env_t = container_env(docs, trainer)
    env_i = container_env(docs, inference)
    assert env_t["TFIC_MODEL_BASE_PATH"] == env_i["TFIC_MODEL_BASE_PATH"]
    mounts_t = {m["mountPath"]: m for m in trainer["volumeMounts"]}
    mounts_i = {m["mountPath"]: m for m in inference["volumeMounts"]}
    path = env_t["TFIC_MODEL_BASE_PATH"]
    assert not mounts_t[path].get("readOnly", False) and mounts_i[path]["readOnly"] is True
    assert mounts_t[env_t["TFIC_TRAINER_STATE_DIR"]]["name"] == "state"
    for root in env_t["TFIC_TRAINER_DATA_ROOTS"].split(","):
        assert root in mounts_t


# ------------------------------------------------------------------------------------------ components


def test_trainer_tls_component_probes_the_tls_port_with_the_secret_ca() -> None:
    """kubelet's gRPC probes cannot speak TLS: the component swaps them for the image's health check, which
    verifies the server with the Secret's CA, on the port and health services the trainer really uses."""
    trainer = next(s for s in SERVICES if s.name == "trainer")
    require(trainer)
    docs = render("overlays/cpu+components/trainer-tls")
    statefulset = find(docs, "StatefulSet", "tfic-trainer")
    c, args = _cli_args(docs, trainer)
    mount = next(m["mountPath"] for m in c["volumeMounts"] if m["name"] == "tls")
    volume = next(v for v in pod_templates(statefulset)[0]["spec"]["volumes"] if v["name"] == "tls")
    template = yaml.safe_load((K8S / "secrets" / "trainer-tls.secret.yaml").read_text())
    assert volume["secret"]["secretName"] == template["metadata"]["name"]
    assert str(args.tls_cert) == f"{mount}/tls.crt" and str(args.tls_key) == f"{mount}/tls.key"
    assert {"tls.crt", "tls.key", "ca.crt"} <= set(template["stringData"])
    for probe, service in (("startupProbe", ""), ("livenessProbe", ""), ("readinessProbe", trainer.grpc_service)):
        assert "grpc" not in c[probe]
        command = c[probe]["exec"]["command"]
        assert command[:5] == ["python", "/opt/tfic/healthcheck.py", "grpc", str(args.port), service], probe
        assert command[command.index("--tls-ca") + 1] == f"{mount}/ca.crt"


def test_models_s3_component_swaps_the_shared_volume_for_sync_sidecars() -> None:
    docs = render("overlays/cpu+components/models-s3")
    assert find(docs, "PersistentVolumeClaim", "tfic-models")["spec"]["accessModes"] == ["ReadWriteOnce"]
    inference = pod_templates(find(docs, "Deployment", "tfic-inference"))[0]["spec"]
    trainer = pod_templates(find(docs, "StatefulSet", "tfic-trainer"))[0]["spec"]
    models = next(v for v in inference["volumes"] if v["name"] == "models")
    assert "emptyDir" in models and "persistentVolumeClaim" not in models
    sync = {c["name"]: c for c in inference["containers"]}["model-sync"]
    push = {c["name"]: c for c in trainer["containers"]}["model-sync"]
    assert sync["command"][-1] == "pull" and push["command"][-1] == "push"
    for c, main in ((sync, "inference"), (push, "trainer")):
        # The sidecar runs the same image as the service (it has fsspec and s3fs) and syncs its models mount.
        assert (
            c["image"]
            == {x["name"]: x for x in (inference if main == "inference" else trainer)["containers"]}[main]["image"]
        )
        mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
        assert c["args"][c["args"].index("--local") + 1] == mounts["models"]
        assert c["args"][c["args"].index("--remote") + 1] == "$(TFIC_MODELS_URI)"
    configmap = next(d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"].startswith("tfic-models-s3"))
    assert configmap["data"]["TFIC_MODELS_URI"].startswith("s3://")


# The gateway's settings for its upstream credential (--inference-ca implies TLS).
GATEWAY_UPSTREAM = {"TFIC_GATEWAY_INFERENCE_AUTH_TOKEN", "TFIC_GATEWAY_INFERENCE_CA"}


def test_inference_tls_component_closes_the_port_and_gives_the_gateway_its_credential() -> None:
    """The inference service serves TLS with the Secret's certificate and demands the token; its probes verify it
    with the Secret's CA, on the port and health services the service really uses; the gateway gets the same
    token and only the CA (never the key)."""
    inference, gateway = (next(s for s in SERVICES if s.name == n) for n in ("inference", "gateway"))
    require(inference)
    name = "overlays/cpu+components/inference-tls"
    docs = render(name)
    deployment = find(docs, "Deployment", "tfic-inference")
    c, args = _cli_args(docs, inference)
    mount = next(m["mountPath"] for m in c["volumeMounts"] if m["name"] == "tls")
    volume = next(v for v in pod_templates(deployment)[0]["spec"]["volumes"] if v["name"] == "tls")
    template = yaml.safe_load((K8S / "secrets" / "inference-tls.secret.yaml").read_text())
    assert volume["secret"]["secretName"] == template["metadata"]["name"]
    assert str(args.tls_cert) == f"{mount}/tls.crt" and str(args.tls_key) == f"{mount}/tls.key"
    assert {"tls.crt", "tls.key", "ca.crt"} <= set(template["stringData"])
    auth = yaml.safe_load((K8S / "secrets" / "auth.secret.yaml").read_text())
    token = {e["name"]: e for e in c["env"]}["TFIC_INFERENCE_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert token["name"] == auth["metadata"]["name"] and token["key"] in auth["stringData"]
    assert not token.get("optional"), "a missing token must stop the pod, not open the port"
    unknown = {n for n in set(container_env(docs, c)) | {e["name"] for e in c["env"]} if n.startswith("TFIC_")}
    assert not unknown - cli_env_vars(inference)
    for probe, service in (("startupProbe", ""), ("livenessProbe", ""), ("readinessProbe", inference.grpc_service)):
        assert "grpc" not in c[probe]
        command = c[probe]["exec"]["command"]
        assert command[:5] == ["python", "/opt/tfic/healthcheck.py", "grpc", str(args.port), service], probe
        assert command[command.index("--tls-ca") + 1] == f"{mount}/ca.crt"

    front = container(find(docs, "Deployment", "tfic-gateway"), "gateway")
    env = {e["name"]: e for e in front["env"]}
    assert env["TFIC_GATEWAY_INFERENCE_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == token
    ca_mount = next(m["mountPath"] for m in front["volumeMounts"] if m["name"] == "inference-tls")
    assert env["TFIC_GATEWAY_INFERENCE_CA"]["value"] == f"{ca_mount}/ca.crt"
    ca_volume = next(
        v
        for v in pod_templates(find(docs, "Deployment", "tfic-gateway"))[0]["spec"]["volumes"]
        if v["name"] == "inference-tls"
    )
    assert ca_volume["secret"]["secretName"] == template["metadata"]["name"]
    assert [i["key"] for i in ca_volume["secret"]["items"]] == ["ca.crt"]
    assert cli_env_vars(gateway) >= GATEWAY_UPSTREAM, "the gateway reads its upstream credential"
