"""The cluster configs of docs/clusters.md, checked offline by the tools that would read them:

- docs/cluster/aws-gpu.yaml by Ray's own cluster-launcher validation (what `ray up` runs before it
  calls the cloud: `prepare_config` fills the provider's defaults, `validate_config` checks the
  result against Ray's JSON schema, ray/autoscaler/ray-schema.json);
- docs/cluster/rayjob.yaml and results-pvc.yaml: no pip package carries KubeRay's CRD schema, so the
  pod templates (and the volume claim) are checked against Kubernetes' own OpenAPI schema, strict
  (`kubernetes-validate`: every key known, types and required fields), and the RayJob's own fields
  against the ray.io/v1 API (the keys KubeRay accepts, the ones it requires);
- every `python -m benchmark run ...` they and the page give parses with the CLI's own parser
  and names a suite file that exists.

Nothing here reaches a cloud or a Kubernetes cluster."""

from __future__ import annotations

import copy
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from benchmark.__main__ import build_parser

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "docs" / "cluster"


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((CLUSTER / name).read_text())


def run_commands(text: str) -> list[str]:
    """Every `python -m benchmark run ...` in `text`, as one line (YAML folding and shell line
    continuations joined, quotes and a trailing `;`/`&&` chain cut)."""
    text = re.sub(r"\\\n\s*", " ", text)
    found = []
    for match in re.finditer(r"python -m benchmark run [^\n'`;&|]*", text):
        found.append(match.group(0).strip())
    return found


def check_run_command(command: str) -> None:
    args = build_parser().parse_args(shlex.split(command.removeprefix("python -m benchmark ")))
    assert args.command == "run", command
    assert (REPO / args.suite).is_file(), f"{command}: no suite file {args.suite}"
    assert args.storage and args.storage.startswith("s3://"), f"{command}: a cluster needs a shared --storage"


# ------------------------------------------------------------------------------ ray up (AWS)


def ray_validate(config: dict[str, Any]) -> dict[str, Any]:
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def test_the_aws_config_passes_ray_s_own_validation() -> None:
    config = ray_validate(load("aws-gpu.yaml"))
    workers = config["available_node_types"]["gpu_worker"]
    assert config["provider"]["type"] == "aws" and config["head_node_type"] == "head"
    assert workers["node_config"]["InstanceType"].startswith(("g5", "g6", "p4", "p5")), "GPU workers"
    assert config["file_mounts"]["~/resnet-benchmark"] == "."
    assert any("pip install" in c and "~/resnet-benchmark" in c for c in config["setup_commands"])
    # the fleet places trials on the nodes up when it starts: a fixed number of GPU workers
    assert workers["min_workers"] == workers["max_workers"] > 0


def test_ray_s_validation_refuses_a_broken_copy() -> None:
    import jsonschema

    config = load("aws-gpu.yaml")
    misspelt = copy.deepcopy(config)
    misspelt["available_node_types"]["gpu_worker"]["max_worker"] = 4
    with pytest.raises(jsonschema.ValidationError, match="max_worker"):
        ray_validate(misspelt)
    wrong_type = copy.deepcopy(config)
    wrong_type["max_workers"] = "four"
    with pytest.raises(jsonschema.ValidationError):
        ray_validate(wrong_type)


def test_the_commands_in_the_aws_config_run_a_suite_on_the_cluster() -> None:
    commands = run_commands((CLUSTER / "aws-gpu.yaml").read_text())
    assert commands
    for command in commands:
        check_run_command(command)
        assert "--ray-address auto" in command  # on the head, join the cluster, not a private instance


# ------------------------------------------------------------------------------ KubeRay


# The ray.io/v1 fields of the objects the manifest uses (KubeRay's API reference); required ones apart.
RAYJOB_SPEC = {"activeDeadlineSeconds", "backoffLimit", "clusterSelector", "deletionStrategy", "entrypoint",
               "entrypointNumCpus", "entrypointNumGpus", "entrypointResources", "jobId", "managedBy", "metadata",
               "rayClusterSpec", "runtimeEnvYAML", "shutdownAfterJobFinishes", "submissionMode", "submitterConfig",
               "submitterPodTemplate", "suspend", "ttlSecondsAfterFinished"}
RAYCLUSTER_SPEC = {"autoscalerOptions", "enableInTreeAutoscaling", "gcsFaultToleranceOptions", "headGroupSpec",
                   "headServiceAnnotations", "managedBy", "rayVersion", "suspend", "workerGroupSpecs"}
HEAD_GROUP = {"enableIngress", "headService", "rayStartParams", "serviceType", "template"}
WORKER_GROUP = {"groupName", "idleTimeoutSeconds", "maxReplicas", "minReplicas", "numOfHosts", "rayStartParams",
                "replicas", "scaleStrategy", "suspend", "template"}


def unknown(mapping: dict[str, Any], known: set[str], where: str) -> list[str]:
    return [f"{where}.{key}: not a field" for key in mapping if key not in known]


KUBERNETES_VERSION = "1.32"  # a version the managed services (EKS, GKE, AKS) all run


def kubernetes_problems(resource: dict[str, Any], where: str) -> list[str]:
    """What Kubernetes' OpenAPI schema (strict: no unknown keys) refuses in `resource`."""
    import kubernetes_validate

    try:
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{where}: {exc.message} (at {'.'.join(map(str, exc.path))})"]
    return []


def pod_template_problems(template: dict[str, Any], where: str) -> list[str]:
    """A RayCluster group's `template` is a core/v1 PodTemplateSpec: checked as a PodTemplate's."""
    return kubernetes_problems({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "check"},
                                "template": template}, where)


def rayjob_problems(job: dict[str, Any]) -> list[str]:
    problems = []
    if job.get("apiVersion") != "ray.io/v1" or job.get("kind") != "RayJob":
        problems.append("apiVersion/kind: expected ray.io/v1 RayJob")
    if not job.get("metadata", {}).get("name"):
        problems.append("metadata.name: required")
    spec = job.get("spec", {})
    problems += unknown(spec, RAYJOB_SPEC, "spec")
    if not isinstance(spec.get("entrypoint"), str) or not spec["entrypoint"].strip():
        problems.append("spec.entrypoint: required (the command the job runs)")
    cluster = spec.get("rayClusterSpec", {})
    problems += unknown(cluster, RAYCLUSTER_SPEC, "spec.rayClusterSpec")
    groups = [("spec.rayClusterSpec.headGroupSpec", cluster.get("headGroupSpec"), HEAD_GROUP)]
    groups += [(f"spec.rayClusterSpec.workerGroupSpecs[{i}]", group, WORKER_GROUP)
               for i, group in enumerate(cluster.get("workerGroupSpecs", []))]
    for where, group, known in groups:
        if not isinstance(group, dict) or "template" not in group:
            problems.append(f"{where}.template: required")
            continue
        problems += unknown(group, known, where)
        problems += [f"{where}.rayStartParams.{k}: values are strings" for k, v in group.get("rayStartParams", {}).items()
                     if not isinstance(v, str)]
        problems += pod_template_problems(group["template"], f"{where}.template")
        if "groupName" in known:
            if not group.get("groupName"):
                problems.append(f"{where}.groupName: required")
            if not group.get("minReplicas", 0) <= group.get("replicas", 0) <= group.get("maxReplicas", 2**31):
                problems.append(f"{where}: replicas must lie within [minReplicas, maxReplicas]")
    return problems


def test_the_rayjob_manifest_holds_to_the_schemas() -> None:
    job = load("rayjob.yaml")
    assert rayjob_problems(job) == []
    cluster = job["spec"]["rayClusterSpec"]
    for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        assert all(c.get("image") for c in group["template"]["spec"]["containers"])
    gpu_workers = [g for g in cluster["workerGroupSpecs"]
                   if any("nvidia.com/gpu" in c["resources"]["limits"] for c in g["template"]["spec"]["containers"])]
    assert gpu_workers, "a GPU worker group"
    assert all(g["minReplicas"] == g["replicas"] == g["maxReplicas"] > 0 for g in gpu_workers)


def test_the_manifests_keep_credentials_out_and_results_on_a_volume() -> None:
    job = load("rayjob.yaml")
    text = (CLUSTER / "rayjob.yaml").read_text()
    assert "AWS_SECRET_ACCESS_KEY=" not in text.replace("--from-literal=AWS_SECRET_ACCESS_KEY=...", "")
    pods = [job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"],
            *(g["template"] for g in job["spec"]["rayClusterSpec"]["workerGroupSpecs"])]
    for pod in pods:  # every node reaches the S3 storage, with keys from a Secret, never inline
        for container in pod["spec"]["containers"]:
            assert {"secretRef": {"name": "resnet-benchmark-s3"}} in container.get("envFrom", [])
            assert not any(e.get("name", "").startswith("AWS_") and "value" in e for e in container.get("env", []))
    claim = load("results-pvc.yaml")
    assert claim["kind"] == "PersistentVolumeClaim" and kubernetes_problems(claim, "results-pvc.yaml") == []
    head = pods[0]["spec"]
    assert {"name": "out", "persistentVolumeClaim": {"claimName": claim["metadata"]["name"]}} in head["volumes"]


def test_the_rayjob_runs_a_suite_with_shared_storage() -> None:
    commands = run_commands(load("rayjob.yaml")["spec"]["entrypoint"])
    assert len(commands) == 1
    check_run_command(commands[0])


@pytest.mark.parametrize("break_it, expected", [
    (lambda job: job["spec"].pop("entrypoint"), "spec.entrypoint: required"),
    (lambda job: job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0].update(replica=2), "replica: not a field"),
    (lambda job: job["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParams"].update({"num-cpus": 0}),
     "values are strings"),
    (lambda job: job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
     .update(imagePullPolicies="Always"), "'imagePullPolicies' was unexpected"),
    (lambda job: job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
     .update(ports=[{"containerPort": "8265"}]), "'8265' is not of type 'integer'"),
    (lambda job: job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0].update(replicas=9), "within [minReplicas"),
])
def test_a_broken_rayjob_is_refused(break_it: Any, expected: str) -> None:
    job = load("rayjob.yaml")
    break_it(job)
    assert any(expected in problem for problem in rayjob_problems(job)), rayjob_problems(job)


def test_kubernetes_schema_refuses_a_container_without_a_name() -> None:
    template = load("rayjob.yaml")["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]
    del template["spec"]["containers"][0]["name"]
    assert any("'name' is a required property" in p for p in pod_template_problems(template, "head"))


# ------------------------------------------------------------------------------ the page


def test_the_page_s_run_commands_parse_and_name_real_suites() -> None:
    commands = run_commands((REPO / "docs" / "clusters.md").read_text())
    assert len(commands) >= 2
    for command in commands:
        check_run_command(command)


def test_the_configs_agree_on_ray_s_version_and_the_image_s_layout() -> None:
    dockerfile = (CLUSTER / "Dockerfile").read_text()
    base = re.search(r"^FROM rayproject/ray:(\S+)-py311-gpu$", dockerfile, re.M)
    launcher = re.fullmatch(r"rayproject/ray:(\S+)-py311-gpu", load("aws-gpu.yaml")["docker"]["image"])
    job = load("rayjob.yaml")
    assert base and launcher and base.group(1) == launcher.group(1) == job["spec"]["rayClusterSpec"]["rayVersion"]
    assert "COPY --chown=ray . /app" in dockerfile and job["spec"]["entrypoint"].startswith("cd /app && ")
