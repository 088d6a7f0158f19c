"""The container and Kubernetes files, read as data (no Docker or cluster here): they parse,
they point at what the app serves, and a stop is always graceful."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from syncd.config import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
#: What every object of these kinds must carry (a small offline stand-in for the API schemas).
REQUIRED = {"Deployment": ("spec.selector.matchLabels", "spec.template.metadata.labels",
                           "spec.template.spec.containers"),
            "Service": ("spec.selector", "spec.ports"), "PodDisruptionBudget": ("spec.selector.matchLabels",),
            "ConfigMap": ("data",), "Secret": ("stringData",)}


def dig(doc: dict, path: str):
    for key in path.split("."):
        doc = doc[key]
    return doc


def seconds(text: str) -> float:
    return float(text.rstrip("s"))


@pytest.fixture(scope="module")
def objects() -> dict[str, dict]:
    found = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            assert {"apiVersion", "kind", "metadata"} <= set(doc), path.name
            for required in REQUIRED.get(doc["kind"], ()):
                assert dig(doc, required), f"{path.name}: {doc['kind']} lacks {required}"
            found[doc["kind"]] = doc
    return found


def test_kustomization_lists_files_that_exist_and_leaves_the_example_secret_out():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert all((K8S / name).is_file() for name in kustomization["resources"])
    assert "secret.example.yaml" not in kustomization["resources"]


def test_the_deployment_runs_several_replicas_with_probes_on_what_the_app_serves(objects):
    deployment = objects["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert deployment["spec"]["replicas"] >= 2
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]
    grace = float(objects["ConfigMap"]["data"]["SYNCD_SHUTDOWN_GRACE_S"])
    assert pod["terminationGracePeriodSeconds"] > grace >= Settings().shutdown_grace_s


def test_secrets_come_from_the_secret_and_every_name_the_settings_know(objects):
    [container] = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    refs = {next(iter(ref.values()))["name"] for ref in container["envFrom"]}
    assert refs == {objects["ConfigMap"]["metadata"]["name"], objects["Secret"]["metadata"]["name"]}
    secret_names = set(objects["Secret"]["stringData"])
    assert {"SYNCD_ADMIN_TOKEN", "SYNCD_APP_WEBHOOK_SECRET", "SYNCD_SECRET_KEY", "SYNCD_MONGODB_URI"} <= secret_names
    known = {f"SYNCD_{name.upper()}" for name in Settings.model_fields}
    assert set(objects["ConfigMap"]["data"]) | secret_names <= known


def test_the_service_and_the_budget_select_the_pods(objects):
    labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert objects["Service"]["spec"]["selector"].items() <= labels.items()
    assert objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    [container] = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert objects["Service"]["spec"]["ports"][0]["targetPort"] in {p["name"] for p in container["ports"]}
    assert objects["PodDisruptionBudget"]["spec"]["minAvailable"] < objects["Deployment"]["spec"]["replicas"]


def test_compose_stops_gracefully_on_a_replica_set_and_leaves_the_public_url_unset():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    syncd, mongo = compose["services"]["syncd"], compose["services"]["mongo"]
    grace = float(syncd["environment"]["SYNCD_SHUTDOWN_GRACE_S"])
    assert seconds(syncd["stop_grace_period"]) > grace
    assert syncd["environment"]["SYNCD_PUBLIC_URL"] == "${SYNCD_PUBLIC_URL:-}"
    assert Settings(public_url="").public_url is None  # what compose passes when it is unset
    assert "replicaSet=rs0" in syncd["environment"]["SYNCD_MONGODB_URI"]
    assert "--replSet rs0" in mongo["entrypoint"][-1] and "--keyFile" in mongo["entrypoint"][-1]
    assert mongo["environment"]["MONGO_INITDB_ROOT_PASSWORD"].startswith("${SYNCD_MONGO_PASSWORD:?")


def test_the_env_example_names_only_settings_that_exist():
    names = [line.split("=", 1)[0].lstrip("# ") for line in (ROOT / ".env.example").read_text().splitlines()
             if "=" in line and line.lstrip("# ").startswith("SYNCD_")]
    known = {f"SYNCD_{name.upper()}" for name in Settings.model_fields} | {"SYNCD_MONGO_PASSWORD"}
    unknown = [n for n in names if n not in known and not n.endswith("_BASE_URL")]
    assert names and not unknown
