"""deploy/kubernetes/ against the Kubernetes API's own JSON schemas, strictly (an unknown field is an
error), offline: the schemas ship inside the kubernetes-validate package. Checked against the oldest
Kubernetes the manifests support and the newest the package knows."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

K8S = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
#: policy/v1 PodDisruptionBudgets and the probes' fields as used are there since 1.21; 1.25 is the
#: oldest release the package still ships schemas for.
OLDEST = "1.25.0"
VERSIONS = sorted({OLDEST, kubernetes_validate.latest_version()})


def resources() -> list[tuple[str, dict]]:
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            # kustomize's own file is no API object: tests/unit/test_deploy.py reads it.
            if doc and doc.get("kind") != "Kustomization":
                found.append((f"{path.name}:{doc['kind']}", doc))
    return found


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("name", "resource"), resources(), ids=[name for name, _ in resources()])
def test_every_manifest_is_valid_against_the_kubernetes_schema(name, resource, version):
    kubernetes_validate.validate(resource, version, strict=True)


def test_the_manifests_are_all_checked():
    assert {name.split(":")[1] for name, _ in resources()} == {
        "ConfigMap", "Deployment", "PodDisruptionBudget", "Secret", "Service"}


def test_the_schema_check_refuses_a_misspelt_field_and_a_wrong_type():
    deployment = next(r for name, r in resources() if name.endswith(":Deployment"))
    misspelt = {**deployment, "spec": {**deployment["spec"], "replica": 3}}
    wrong_type = {**deployment, "spec": {**deployment["spec"], "replicas": "three"}}

    for broken in (misspelt, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)
