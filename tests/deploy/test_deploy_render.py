"""Every kustomization renders, and every object it renders validates: built-in kinds against the Kubernetes
OpenAPI schemas (kubernetes-validate, strict: unknown fields are errors), custom resources against their CRDs'
schemas in deploy/schemas (closed the same way)."""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from deploy_support import KUSTOMIZATIONS, NAMESPACE, SCHEMAS, SECRET_TEMPLATES, Obj, of_kind, pod_templates, render

# The oldest Kubernetes the manifests target (native gRPC probes and the batch.kubernetes.io/job-name label
# are GA in 1.27; kubernetes-validate ships schemas from 1.25) and the newest kubernetes-validate knows.
K8S_VERSIONS = ("1.27.0", kubernetes_validate.latest_version())
CLUSTER_SCOPED = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "PriorityClass"}


@pytest.fixture(autouse=True, scope="module")
def _cached_kubernetes_schemas() -> Iterator[None]:
    """kubernetes-validate parses its JSON schemas on every call; parse each file once (10x faster)."""
    from kubernetes_validate import utils

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(utils, "schema_contents", functools.cache(utils.schema_contents))
        yield


def _crd_files() -> dict[tuple[str, str], Path]:
    found = {}
    for path in sorted(SCHEMAS.glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        found[(data["apiVersion"], data["kind"])] = path
    return found


CRDS = _crd_files()


def _closed(schema: Any) -> Any:
    """A copy of ``schema`` where object schemas reject unknown fields (kubectl --validate=strict)."""
    if isinstance(schema, list):
        return [_closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _closed(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields", False)
    ):
        out["additionalProperties"] = False
    return out


@functools.cache
def _crd_validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    data = yaml.safe_load(CRDS[(api_version, kind)].read_text())
    schema = _closed(data["openAPIV3Schema"])
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    cls.check_schema(schema)
    return cls(schema)


def validate_builtin(obj: Obj, version: str) -> None:
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        raise AssertionError(
            f"{obj['kind']}/{obj['metadata']['name']} is invalid for Kubernetes {version}: {path}: {exc.message}"
        ) from None


def validate_custom(obj: Obj, version: str) -> None:
    key = (obj["apiVersion"], obj["kind"])
    assert key in CRDS, f"no schema for {key} in deploy/schemas: add the CRD's openAPIV3Schema there"
    errors = sorted(_crd_validator(*key).iter_errors(obj), key=lambda e: list(e.path))
    assert not errors, "\n".join(
        f"{obj['kind']}/{obj['metadata']['name']}: {'.'.join(map(str, e.path))}: {e.message}" for e in errors
    )
    # metadata is ObjectMeta for every kind: check it through a built-in kind's schema.
    validate_builtin({"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj["metadata"]}, version)
    # Pod templates inside custom resources (TFJob replicas) get Kubernetes' own PodTemplateSpec schema.
    for i, template in enumerate(pod_templates(obj)):
        probe = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": f"template-{i}"}, "template": template}
        validate_builtin(probe, version)


def validate(obj: Obj, version: str) -> None:
    group = obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else ""
    builtin = "." not in group or group.endswith(".k8s.io")
    if builtin:
        validate_builtin(obj, version)
    else:
        validate_custom(obj, version)


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_renders_valid_objects(name: str) -> None:
    docs = render(name)
    assert docs, f"{name} renders nothing"
    for version in K8S_VERSIONS:
        for obj in docs:
            validate(obj, version)


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_objects_are_unique_and_namespaced(name: str) -> None:
    docs = render(name)
    keys = [(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in docs]
    assert len(keys) == len(set(keys)), f"duplicate objects in {name}"
    for obj in docs:
        if obj["kind"] not in CLUSTER_SCOPED:
            assert obj["metadata"].get("namespace") == NAMESPACE, f"{obj['kind']}/{obj['metadata']['name']}"
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "tfic"


@pytest.mark.parametrize("template", SECRET_TEMPLATES, ids=lambda p: p.name)
def test_secret_templates_are_valid_secrets(template: Path) -> None:
    for obj in yaml.safe_load_all(template.read_text()):
        assert obj["kind"] == "Secret"
        for version in K8S_VERSIONS:
            validate_builtin(obj, version)


def test_every_custom_resource_kind_has_a_schema() -> None:
    """deploy/schemas holds exactly the CRDs the manifests use (no stale or missing schema)."""
    used = set()
    for name in KUSTOMIZATIONS:
        for obj in render(name):
            group = obj["apiVersion"].split("/")[0]
            if "." in group and not group.endswith(".k8s.io"):
                used.add((obj["apiVersion"], obj["kind"]))
    assert used == set(CRDS)


def test_validation_is_strict() -> None:
    """Both validators reject a misspelt field and a wrong type, as the API server would."""
    deployment = copy.deepcopy(of_kind(render("base"), "Deployment")[0])
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolice"] = "Always"
    with pytest.raises(AssertionError, match="imagePullPolice"):
        validate_builtin(deployment, K8S_VERSIONS[-1])
    deployment = copy.deepcopy(of_kind(render("base"), "Deployment")[0])
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"] = {"grpc": {"port": "grpc"}}
    with pytest.raises(AssertionError, match="port"):
        validate_builtin(deployment, K8S_VERSIONS[-1])
    monitor = copy.deepcopy(of_kind(render("base"), "ServiceMonitor")[0])
    monitor["spec"]["endpoints"][0]["intervall"] = "15s"
    with pytest.raises(AssertionError, match="intervall"):
        validate_custom(monitor, K8S_VERSIONS[-1])
    scaled = copy.deepcopy(of_kind(render("overlays/keda"), "ScaledObject")[0])
    scaled["spec"]["maxReplicaCount"] = "ten"
    with pytest.raises(AssertionError, match="maxReplicaCount"):
        validate_custom(scaled, K8S_VERSIONS[-1])
    job = copy.deepcopy(of_kind(render("training/tfjob"), "TFJob")[0])
    job["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["imagePullPolicy2"] = "Always"
    with pytest.raises(AssertionError, match="imagePullPolicy2"):
        validate_custom(job, K8S_VERSIONS[-1])
