"""deploy/k8s: every manifest validates against the Kubernetes JSON schemas (offline, the
schemas `kubernetes-validate` ships), KEDA's objects point at the real rq queue lists, and
every command, option, config key and reference in the manifests exists in the product.

Each check is a function over the loaded documents, so the tests at the end can break a
copy of the manifests and see the check fail.
"""

from __future__ import annotations

import copy
import math
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from pipeline.bus import Bus, connect
from pipeline.cli import main as cli_main
from pipeline.config import Config, ConfigError, load_config
from pipeline.detectors import AUTO, AUTO_ORDER
from pipeline.record import FrameRecord
from pipeline.redis_server import PrivateRedis
from pipeline.sources import describe
from pipeline.stages import STAGE_NAMES
from tests.helpers import free_port

ROOT = Path(__file__).parents[2]
K8S = ROOT / "deploy" / "k8s"
BENCHMARKS = ROOT / "docs" / "benchmarks.md"
# the Kubernetes versions the schemas are checked against: an older one and the newest
# kubernetes-validate ships
K8S_VERSIONS = ("1.28.0", "1.37.0")
KEDA_API = "keda.sh/v1alpha1"
# fields of KEDA's v1alpha1 ScaledObject spec and trigger (its CRD's openAPIV3Schema); the
# CRD is not in the Kubernetes schemas, so a typo here is caught by this list
SCALED_OBJECT_SPEC = {
    "scaleTargetRef", "pollingInterval", "cooldownPeriod", "initialCooldownPeriod",
    "idleReplicaCount", "minReplicaCount", "maxReplicaCount", "advanced", "fallback",
    "triggers",
}  # fmt: skip
TRIGGER = {"type", "name", "metadata", "authenticationRef", "metricType", "useCachedMetrics"}
AUTOSCALED = ("detect", "recognize", "attributes")

Doc = dict[str, Any]


# ----- loading -------------------------------------------------------------------------
def kustomization() -> Doc:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


def load_docs() -> list[Doc]:
    """Every document of the kustomization's resources, in the kustomization's namespace."""
    kust = kustomization()
    docs = []
    for name in kust["resources"]:
        for doc in yaml.safe_load_all((K8S / name).read_text()):
            if doc is None:
                continue
            doc["_file"] = name
            if doc["kind"] != "Namespace":
                doc["metadata"].setdefault("namespace", kust["namespace"])
            docs.append(doc)
    return docs


def clean(doc: Doc) -> Doc:
    return {k: v for k, v in doc.items() if not k.startswith("_")}


def of_kind(docs: list[Doc], kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def containers(docs: list[Doc]) -> list[tuple[str, Doc]]:
    return [
        (name, c)
        for name, dep in of_kind(docs, "Deployment").items()
        for c in dep["spec"]["template"]["spec"]["containers"]
    ]


def facepipe_containers(docs: list[Doc]) -> list[tuple[str, Doc]]:
    return [(n, c) for n, c in containers(docs) if c["image"].split(":")[0] == "facepipe"]


def secret_data(docs: list[Doc]) -> dict[str, str]:
    (secret,) = of_kind(docs, "Secret").values()
    return dict(secret.get("stringData", {}))


def config_text(docs: list[Doc]) -> str:
    return of_kind(docs, "ConfigMap")["facepipe-config"]["data"]["facepipe.yaml"]


def pod_environ(docs: list[Doc], container: Doc) -> dict[str, str]:
    """The container's environment as Kubernetes makes it: secretKeyRef values from the
    Secret (the template's), ``$(VAR)`` expanded from variables defined *earlier* in the
    list (a later or unknown one stays literal, as in Kubernetes)."""
    secret = secret_data(docs)
    env: dict[str, str] = {}
    for var in container.get("env", []):
        if "valueFrom" in var:
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = secret[ref["key"]]
        else:
            env[var["name"]] = re.sub(
                r"\$\((\w+)\)", lambda m: env.get(m[1], m[0]), str(var["value"])
            )
    return env


def load_pod_config(docs: list[Doc], tmp_path: Path, environ: dict[str, str]) -> Config:
    """The ConfigMap's facepipe.yaml loaded as a pod loads it (``ConfigError`` is a failed
    check: an AssertionError with the message)."""
    path = tmp_path / f"facepipe-{uuid.uuid4().hex}.yaml"
    path.write_text(config_text(docs))
    try:
        return load_config(path, environ)
    except ConfigError as exc:
        raise AssertionError(f"configmap.yaml facepipe.yaml: {exc}") from None


# ----- checks --------------------------------------------------------------------------
def check_files_listed() -> None:
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    listed = set(kustomization()["resources"])
    assert on_disk == listed, (
        f"not in kustomization.yaml: {on_disk - listed}; missing: {listed - on_disk}"
    )


def check_schemas(docs: list[Doc], version: str) -> int:
    import kubernetes_validate

    n = 0
    for doc in docs:
        if doc["apiVersion"] == KEDA_API:
            continue
        try:
            kubernetes_validate.validate(clean(doc), version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(
                f"{doc['_file']}: {doc['kind']} {doc['metadata']['name']}: {exc.message}"
            ) from None
        n += 1
    return n


def parse_cli(args: list[str]) -> tuple[str, click.Context]:
    """``args`` (after ``facepipe``) parsed by the real click group, without running it:
    an unknown command, option or choice raises ``click.UsageError``."""
    ctx = click.Context(cli_main, info_name="facepipe")
    name, cmd, rest = cli_main.resolve_command(ctx, list(args))
    assert cmd is not None and name is not None, args
    return name, cmd.make_context(name, list(rest), parent=ctx)


def exec_commands(container: Doc) -> list[list[str]]:
    out = [container["command"] + container.get("args", [])]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        if "exec" in container.get(probe, {}):
            out.append(container[probe]["exec"]["command"])
    return out


def check_commands(docs: list[Doc]) -> int:
    n = 0
    for dep, c in facepipe_containers(docs):
        for command in exec_commands(c):
            assert command[0] == "facepipe", f"{dep}: {command}"
            try:
                parse_cli(command[1:])
            except click.UsageError as exc:
                raise AssertionError(
                    f"{dep}: {' '.join(command)}: {exc.format_message()}"
                ) from None
            n += 1
    return n


def check_env_config_keys(docs: list[Doc], tmp_path: Path) -> None:
    """Every FACEPIPE__A__B names a key of the config (in the ConfigMap's file or the
    defaults: a variable must not create a camera of its own), and the pod's whole
    environment loads with the ConfigMap's file."""
    base = load_pod_config(docs, tmp_path, {})
    for dep, c in facepipe_containers(docs):
        env = pod_environ(docs, c)
        for name in env:
            if not name.startswith("FACEPIPE__"):
                continue
            node: Any = base
            for part in name[len("FACEPIPE__") :].lower().split("__"):
                if isinstance(node, dict):
                    assert part in node, f"{dep}: {name}: no {part!r} in the config"
                    node = node[part]
                else:
                    assert part in type(node).model_fields, f"{dep}: {name}: no key {part!r}"
                    node = getattr(node, part)
        assert not any("$(" in v for v in env.values()), f"{dep}: unexpanded variable in {env}"
        cfg = load_pod_config(docs, tmp_path, env)
        assert cfg.redis.url == env["REDIS_URL"], dep


def check_references(docs: list[Doc]) -> None:
    """Secrets, keys, ConfigMaps, claims and Services named by the manifests exist."""
    secrets = of_kind(docs, "Secret")
    config_maps = of_kind(docs, "ConfigMap")
    claims = of_kind(docs, "PersistentVolumeClaim")
    for name, dep in of_kind(docs, "Deployment").items():
        pod = dep["spec"]["template"]
        labels = pod["metadata"]["labels"]
        assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items(), name
        for c in pod["spec"]["containers"]:
            for var in c.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] in secrets, f"{name}: no Secret {ref['name']}"
                    assert ref["key"] in secret_data(docs), f"{name}: no key {ref['key']}"
            ports = {p.get("name") for p in c.get("ports", [])} | {
                p["containerPort"] for p in c.get("ports", [])
            }
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                for how in ("httpGet", "tcpSocket"):
                    if how in c.get(probe, {}):
                        port = c[probe][how]["port"]
                        assert port in ports, f"{name} {probe}: no container port {port}"
            mounts = {m["name"] for m in c.get("volumeMounts", [])}
            volumes = {v["name"] for v in pod["spec"].get("volumes", [])}
            assert mounts <= volumes, f"{name}: mounts {mounts - volumes} have no volume"
        for vol in pod["spec"].get("volumes", []):
            if "configMap" in vol:
                assert vol["configMap"]["name"] in config_maps, f"{name}: {vol}"
            if "persistentVolumeClaim" in vol:
                assert vol["persistentVolumeClaim"]["claimName"] in claims, f"{name}: {vol}"
    deployments = of_kind(docs, "Deployment")
    for name, svc in of_kind(docs, "Service").items():
        targets = [
            d
            for d in deployments.values()
            if svc["spec"]["selector"].items()
            <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(targets) == 1, f"Service {name} selects {len(targets)} Deployments"
        ports = {
            p["name"]: p["containerPort"]
            for c in targets[0]["spec"]["template"]["spec"]["containers"]
            for p in c.get("ports", [])
        }
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in ports, f"Service {name}: no container port {port}"
            assert ports[port["targetPort"]] == port["port"], name


def redis_service(docs: list[Doc]) -> tuple[str, int]:
    svc = of_kind(docs, "Service")["redis"]
    return svc["metadata"]["name"], svc["spec"]["ports"][0]["port"]


def check_keda(docs: list[Doc], tmp_path: Path) -> None:
    """ScaledObjects: the target Deployment exists and runs the stage's worker; a redis
    trigger on the stage's real rq list (pipeline.bus.Bus / rq's Queue key), at the Redis
    Service, with a TriggerAuthentication taking the password from the Secret."""
    cfg = load_pod_config(docs, tmp_path, {})
    bus = Bus(connect("redis://127.0.0.1:1/0"), cfg.redis.prefix)  # keys only: no I/O
    deployments = of_kind(docs, "Deployment")
    auths = of_kind(docs, "TriggerAuthentication")
    scaled = of_kind(docs, "ScaledObject")
    for doc in docs:
        if doc["apiVersion"].startswith("keda.sh"):
            assert doc["apiVersion"] == KEDA_API, doc["apiVersion"]
            assert doc["kind"] in ("ScaledObject", "TriggerAuthentication"), doc["kind"]
    for name, auth in auths.items():
        assert set(auth["spec"]) == {"secretTargetRef"}, name
        for ref in auth["spec"]["secretTargetRef"]:
            assert set(ref) == {"parameter", "name", "key"}, f"{name}: {ref}"
            assert ref["parameter"] in ("password", "username"), name
            assert ref["name"] in of_kind(docs, "Secret"), f"{name}: no Secret {ref['name']}"
            assert ref["key"] in secret_data(docs), f"{name}: no key {ref['key']}"
    host, port = redis_service(docs)
    namespace = kustomization()["namespace"]
    assert set(scaled) == set(AUTOSCALED), sorted(scaled)
    for name, so in scaled.items():
        spec = so["spec"]
        assert set(spec) <= SCALED_OBJECT_SPEC, f"{name}: unknown {set(spec) - SCALED_OBJECT_SPEC}"
        for key in ("pollingInterval", "minReplicaCount", "maxReplicaCount"):
            assert isinstance(spec.get(key, 0), int), f"{name}: {key} must be an integer"
        target = spec["scaleTargetRef"]["name"]
        assert spec["scaleTargetRef"].get("kind", "Deployment") == "Deployment", name
        assert target in deployments, f"ScaledObject {name}: no Deployment {target}"
        (container,) = deployments[target]["spec"]["template"]["spec"]["containers"]
        stage_name, ctx = parse_cli(container["command"][1:])
        assert stage_name == "worker", f"{name}: {target} runs {container['command']}"
        stage = ctx.params["stage"]
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"], name
        assert "replicas" not in deployments[target]["spec"], f"{target}: KEDA owns replicas"
        (trigger,) = spec["triggers"]
        assert set(trigger) <= TRIGGER, f"{name}: unknown {set(trigger) - TRIGGER}"
        meta = trigger["metadata"]
        # the CRD types trigger metadata as a map of strings
        assert all(isinstance(v, str) for v in meta.values()), f"{name}: quote {meta}"
        assert trigger["type"] == "redis", name
        assert meta["listName"] == bus.queue(stage).key, f"{name}: {meta['listName']}"
        assert meta["listName"] == f"rq:queue:{bus.queue_name(stage)}"
        assert int(meta["listLength"]) >= 1, name
        assert meta["address"] in (f"{host}:{port}", f"{host}.{namespace}.svc.cluster.local:{port}")
        assert meta.get("databaseIndex", "0") == redis_db(docs), name
        assert trigger["authenticationRef"]["name"] in auths, name


def redis_db(docs: list[Doc]) -> str:
    (url,) = {pod_environ(docs, c)["REDIS_URL"] for _, c in facepipe_containers(docs)}
    return url.rsplit("/", 1)[1]


def effective_max_queue(docs: list[Doc], tmp_path: Path) -> int:
    """The detect-queue depth at which the first live camera drops frames (backpressure):
    the smallest capture.max_queue of the enabled cameras (their overrides applied)."""
    cfg = load_pod_config(docs, tmp_path, {})
    cams = [n for n, cam in cfg.cameras.items() if cam.enabled]
    return min([cfg.for_camera(n).capture.max_queue for n in cams] or [cfg.capture.max_queue])


def check_detect_reachable(docs: list[Doc], tmp_path: Path) -> None:
    """The detect queue never grows past the backpressure point, so KEDA can only reach
    ceil(max_queue / listLength) replicas: maxReplicaCount must be reachable."""
    spec = of_kind(docs, "ScaledObject")["detect"]["spec"]
    per_replica = int(spec["triggers"][0]["metadata"]["listLength"])
    reachable = math.ceil(effective_max_queue(docs, tmp_path) / per_replica)
    assert spec["maxReplicaCount"] <= reachable, (
        f"detect maxReplicaCount {spec['maxReplicaCount']} needs a queue of "
        f"{spec['maxReplicaCount'] * per_replica}; cameras drop frames at "
        f"{effective_max_queue(docs, tmp_path)} (capture.max_queue)"
    )


def check_cameras(docs: list[Doc], tmp_path: Path) -> None:
    """One capture Deployment per enabled camera, each of a live camera of the config."""
    captured = {}
    for dep, c in facepipe_containers(docs):
        name, ctx = parse_cli(c["command"][1:])
        if name != "capture":
            continue
        if ctx.params["follow"]:
            # the cameras added at run time (POST /api/streams): no camera of the config
            assert not ctx.params["camera"] and not ctx.params["source"], dep
            continue
        camera = ctx.params["camera"]
        assert camera and not ctx.params["source"], f"{dep}: use --camera NAME"
        cfg = load_pod_config(docs, tmp_path, pod_environ(docs, c))
        assert camera in cfg.cameras, f"{dep}: no camera {camera!r} in the config"
        assert cfg.cameras[camera].enabled, f"{dep}: camera {camera} is disabled"
        assert describe(cfg.cameras[camera].source)[1], f"{dep}: {camera} is not live"
        captured[camera] = dep
    cfg = load_pod_config(docs, tmp_path, {})
    enabled = {n for n, cam in cfg.cameras.items() if cam.enabled}
    assert set(captured) == enabled, f"cameras without a capture: {enabled - set(captured)}"


def check_api(docs: list[Doc], tmp_path: Path) -> None:
    """The API Deployment: `facepipe serve` on every interface of its pod, so with a token
    from the Secret (its config loads and requires it); its Service reaches the port it
    listens on; and where it mounts a ReadWriteOnce claim, it is scheduled on the node of
    the Deployment that writes that claim (the sink), the only node that can mount it."""
    deployments = of_kind(docs, "Deployment")
    serving = [
        (dep, c)
        for dep, c in facepipe_containers(docs)
        if parse_cli(c["command"][1:])[0] == "serve"
    ]
    assert [dep for dep, _ in serving] == ["api"], serving
    ((dep, c),) = serving
    _, ctx = parse_cli(c["command"][1:])
    env = pod_environ(docs, c)
    cfg = load_pod_config(docs, tmp_path, env)
    host = ctx.params["host"] or cfg.api.host
    port = ctx.params["port"] or cfg.api.port
    if host not in ("127.0.0.1", "localhost", "::1"):
        ref = next((v for v in c.get("env", []) if v["name"] == "FACEPIPE__API__TOKEN"), None)
        assert ref is not None and "secretKeyRef" in ref.get("valueFrom", {}), (
            f"{dep}: serves on {host} without FACEPIPE__API__TOKEN from the Secret"
        )
        assert cfg.api.token, f"{dep}: no token"
    assert {p["containerPort"] for p in c["ports"]} == {port}, f"{dep}: listens on {port}"
    pod = deployments[dep]["spec"]["template"]
    claims = of_kind(docs, "PersistentVolumeClaim")
    for vol in pod["spec"].get("volumes", []):
        claim = vol.get("persistentVolumeClaim", {}).get("claimName")
        if claim is None or "ReadWriteOnce" not in claims[claim]["spec"]["accessModes"]:
            continue
        writers = [
            name
            for name, d in deployments.items()
            if name != dep
            and any(
                v.get("persistentVolumeClaim", {}).get("claimName") == claim
                for v in d["spec"]["template"]["spec"].get("volumes", [])
            )
        ]
        terms = (
            pod["spec"].get("affinity", {}).get("podAffinity", {})
            .get("requiredDuringSchedulingIgnoredDuringExecution", [])
        )  # fmt: skip
        for writer in writers:
            labels = deployments[writer]["spec"]["template"]["metadata"]["labels"]
            assert any(
                t["topologyKey"] == "kubernetes.io/hostname"
                and t["labelSelector"]["matchLabels"].items() <= labels.items()
                for t in terms
            ), f"{dep}: mounts the ReadWriteOnce claim {claim} away from {writer}'s node"


def check_security(docs: list[Doc]) -> None:
    (ns,) = of_kind(docs, "Namespace").values()
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for name, dep in of_kind(docs, "Deployment").items():
        pod = dep["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] > 0, name
        # what the namespace's Pod Security level `restricted` demands as well
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod.get("automountServiceAccountToken") is False, name
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            res = c["resources"]
            assert parse_mib(res["limits"]["memory"]) >= parse_mib(res["requests"]["memory"])


def worker_stage(container: Doc) -> str | None:
    name, ctx = parse_cli(container["command"][1:])
    if name == "worker":
        return ctx.params["stage"]
    return "sink" if name == "sink" else None


def check_probes(docs: list[Doc]) -> None:
    """Each stage worker's pod is ready/alive while a worker of its stage on that host
    (the pod) beats its heartbeat: `facepipe health --worker STAGE`."""
    stages = set()
    for dep, c in facepipe_containers(docs):
        stage = worker_stage(c)
        if stage is None:
            continue
        stages.add(stage)
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            name, ctx = parse_cli(c[probe]["exec"]["command"][1:])
            assert name == "health" and ctx.params["stages"] == (stage,), f"{dep} {probe}"
    assert stages == set(STAGE_NAMES), f"no Deployment for {set(STAGE_NAMES) - stages}"


def parse_mib(quantity: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "M": 1e6 / 2**20, "G": 1e9 / 2**20}
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([A-Za-z]*)", str(quantity))
    assert m and m[2] in units, quantity
    return float(m[1]) * units[m[2]]


def measured_rss() -> dict[str, int]:
    """Worker RSS in MiB after start-up, from docs/benchmarks.md (the 'after' column)."""
    rss = {}
    for line in BENCHMARKS.read_text().splitlines():
        m = re.match(
            r"\| (`import pipeline\.cli`|\w+)(?: \(([\w-]+)\))? \| (\d+|-) / (\d+) \|", line
        )
        if m:
            rss[m[1] if not m[2] else f"{m[1]}:{m[2]}"] = int(m[4])
    return rss


def check_memory_sizing(docs: list[Doc], tmp_path: Path) -> None:
    """A worker's memory request holds its measured RSS plus one `facepipe health` probe
    process (the RSS of `import pipeline.cli`), which runs in the same container."""
    rss = measured_rss()
    probe = rss["`import pipeline.cli`"]
    cfg = load_pod_config(docs, tmp_path, {})
    backends = {"detect": cfg.detector.backend, "attributes": cfg.attributes.backend}
    for dep, c in facepipe_containers(docs):
        stage = worker_stage(c)
        if stage is None:
            continue
        if stage == "detect" and backends[stage] == AUTO:  # either, by the image's platform
            measured = max(rss[f"detect:{b}"] for b in AUTO_ORDER)
        else:
            measured = rss[f"{stage}:{backends[stage]}" if stage in backends else stage]
        request = parse_mib(c["resources"]["requests"]["memory"])
        assert request >= measured + probe, f"{dep}: {request} MiB < {measured} + {probe}"


def check_redis(docs: list[Doc]) -> None:
    """Redis as docker-compose.yml runs it: the Secret's password, no persistence; every
    facepipe pod's REDIS_URL reaches its Service with that password."""
    (container,) = of_kind(docs, "Deployment")["redis"]["spec"]["template"]["spec"]["containers"]
    env = pod_environ(docs, container)
    args = [re.sub(r"\$\((\w+)\)", lambda m: env[m[1]], a) for a in container["args"]]
    password = secret_data(docs)["redis-password"]
    assert args[args.index("--requirepass") + 1] == password, "redis: not the Secret's password"
    assert args[args.index("--save") + 1] == "", f"redis: snapshots on: {container['args']}"
    assert args[args.index("--appendonly") + 1] == "no", f"redis: AOF on: {container['args']}"
    host, port = redis_service(docs)
    for dep, c in facepipe_containers(docs):
        url = pod_environ(docs, c)["REDIS_URL"]
        assert url == f"redis://:{password}@{host}:{port}/0", f"{dep}: {url}"


def check_metrics(docs: list[Doc]) -> None:
    (container,) = of_kind(docs, "Deployment")["metrics"]["spec"]["template"]["spec"]["containers"]
    name, ctx = parse_cli(container["command"][1:])
    assert name == "metrics"
    port = ctx.params["port"]
    assert container["ports"][0]["containerPort"] == port
    env = pod_environ(docs, container)
    assert env["FACEPIPE__METRICS__HOST"] == "0.0.0.0"  # the default listens on loopback only
    for meta in (
        of_kind(docs, "Deployment")["metrics"]["spec"]["template"]["metadata"],
        of_kind(docs, "Service")["metrics"]["metadata"],
    ):
        ann = meta["annotations"]
        assert ann["prometheus.io/scrape"] == "true" and ann["prometheus.io/port"] == str(port)
    assert of_kind(docs, "Service")["metrics"]["spec"]["ports"][0]["port"] == port
    for dep, c in facepipe_containers(docs):  # nobody else serves /metrics
        name, ctx = parse_cli(c["command"][1:])
        if name == "sink":
            assert ctx.params["metrics_port"] == 0, dep


# ----- the tests -----------------------------------------------------------------------
@pytest.fixture()
def docs() -> list[Doc]:
    return load_docs()


def test_every_manifest_file_is_in_the_kustomization():
    check_files_listed()


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_core_kinds_validate_against_the_kubernetes_schemas(docs, version):
    assert check_schemas(docs, version) >= 15


def test_kubectl_kustomize_renders_the_same_objects(docs):
    kubectl = shutil.which("kubectl") or shutil.which("kustomize")
    if not kubectl:
        pytest.skip("no kubectl or kustomize on PATH (the schema tests still ran)")
    cmd = (
        [kubectl, "kustomize", str(K8S)]
        if kubectl.endswith("kubectl")
        else [kubectl, "build", str(K8S)]
    )
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    rendered = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert sorted((d["kind"], d["metadata"]["name"]) for d in rendered) == sorted(
        (d["kind"], d["metadata"]["name"]) for d in docs
    )
    for d in rendered:
        if d["kind"] != "Namespace":
            assert d["metadata"]["namespace"] == "facepipe", d["metadata"]
    import kubernetes_validate

    for d in rendered:
        if d["apiVersion"] != KEDA_API:
            kubernetes_validate.validate(d, K8S_VERSIONS[-1], strict=True)


def test_commands_and_probes_are_real_facepipe_commands(docs):
    assert check_commands(docs) >= 20


def test_env_vars_name_real_config_keys_and_every_pod_config_loads(docs, tmp_path):
    check_env_config_keys(docs, tmp_path)


def test_configmap_config_validates(docs, tmp_path):
    cfg = load_pod_config(docs, tmp_path, {})
    assert cfg.cameras, "the example config has cameras"


def test_references_exist(docs):
    check_references(docs)


def test_keda_scales_detect_recognize_attributes_on_their_rq_lists(docs, tmp_path):
    check_keda(docs, tmp_path)


def test_detect_max_replicas_is_reachable_below_backpressure(docs, tmp_path):
    check_detect_reachable(docs, tmp_path)


def test_one_capture_per_enabled_live_camera(docs, tmp_path):
    check_cameras(docs, tmp_path)


def test_the_api_needs_a_token_and_runs_beside_the_snapshots(docs, tmp_path):
    check_api(docs, tmp_path)


def test_pods_run_as_non_root_with_read_only_root(docs):
    check_security(docs)


def test_stage_workers_are_probed_with_facepipe_health(docs):
    check_probes(docs)


def test_memory_requests_hold_the_measured_worker_rss_and_a_probe(docs, tmp_path):
    assert {"detect:blazeface", "detect:yunet", "track", "recognize", "attributes:ensemble",
            "sink"} <= set(
        measured_rss()
    )
    check_memory_sizing(docs, tmp_path)


def test_redis_has_the_secret_password_and_no_persistence(docs):
    check_redis(docs)


def test_metrics_endpoint_is_served_once_and_annotated(docs):
    check_metrics(docs)


def test_the_scaled_lists_are_where_rq_keeps_waiting_jobs(docs, tmp_path, redis_url):
    """KEDA's redis scaler reads LLEN of listName: a job the pipeline sends to a stage
    must make that very key a Redis list one longer (a real redis-server, rq's enqueue)."""
    prefix = load_pod_config(docs, tmp_path, {}).redis.prefix
    bus = Bus(connect(redis_url), prefix)
    lists = {
        so["spec"]["scaleTargetRef"]["name"]: so["spec"]["triggers"][0]["metadata"]["listName"]
        for so in of_kind(docs, "ScaledObject").values()
    }
    for stage, key in lists.items():
        assert bus.conn.llen(key) == 0
        bus.send(stage, FrameRecord(stream="cam", seq=0, ts=0.0, session="s1", key="k"))
        assert bus.conn.type(key) == b"list", key
        assert bus.conn.llen(key) == 1 == bus.depth(stage), key


# ----- a broken manifest fails its check ----------------------------------------------------
def _container(docs: list[Doc], deployment: str) -> Doc:
    return of_kind(docs, "Deployment")[deployment]["spec"]["template"]["spec"]["containers"][0]


def _env_var(container: Doc, name: str) -> Doc:
    (var,) = [v for v in container["env"] if v["name"] == name]
    return var


def _set_config(docs: list[Doc], text: str) -> None:
    of_kind(docs, "ConfigMap")["facepipe-config"]["data"]["facepipe.yaml"] = text


BREAKAGES: dict[str, tuple[Callable[[list[Doc]], None], Callable[[list[Doc], Path], Any]]] = {
    "unknown container field": (
        lambda d: _container(d, "detect").update(imagePullPolcy="Always"),
        lambda d, _: check_schemas(d, K8S_VERSIONS[-1]),
    ),
    "port as a string": (
        lambda d: of_kind(d, "Service")["redis"]["spec"]["ports"][0].update(port="6379"),
        lambda d, _: check_schemas(d, K8S_VERSIONS[-1]),
    ),
    "unknown command": (
        lambda d: _container(d, "track").update(command=["facepipe", "wroker", "track"]),
        lambda d, _: check_commands(d),
    ),
    "unknown option": (
        lambda d: _container(d, "sink").update(command=["facepipe", "sink", "--metric-port", "0"]),
        lambda d, _: check_commands(d),
    ),
    "unknown stage in a probe": (
        lambda d: _container(d, "detect")["livenessProbe"]["exec"].update(
            command=["facepipe", "health", "--worker", "detection"]
        ),
        lambda d, _: check_commands(d),
    ),
    "probe of another stage": (
        lambda d: _container(d, "recognize")["readinessProbe"]["exec"].update(
            command=["facepipe", "health", "--worker", "detect"]
        ),
        lambda d, _: check_probes(d),
    ),
    "env var of no config key": (
        lambda d: _container(d, "sink")["env"].append(
            {"name": "FACEPIPE__STORE__SNAPSHOT_DIR", "value": "/data"}
        ),
        lambda d, p: check_env_config_keys(d, p),
    ),
    "env var creating a camera": (
        lambda d: _container(d, "capture-door")["env"].append(
            {"name": "FACEPIPE__CAMERAS__GARAGE__SOURCE", "value": "rtsp://x/y"}
        ),
        lambda d, p: check_env_config_keys(d, p),
    ),
    "bad config value": (
        lambda d: _set_config(d, config_text(d).replace("max_queue: 32", "max_queue: 0")),
        lambda d, p: load_pod_config(d, p, {}),
    ),
    "unknown config key": (
        lambda d: _set_config(d, config_text(d).replace("resize_width:", "resize_widht:")),
        lambda d, p: load_pod_config(d, p, {}),
    ),
    "variable defined after its use": (
        lambda d: _container(d, "track")["env"].reverse(),
        lambda d, p: check_env_config_keys(d, p),
    ),
    "listName of the wrong key": (
        lambda d: of_kind(d, "ScaledObject")["detect"]["spec"]["triggers"][0]["metadata"].update(
            listName="facepipe.detect"
        ),
        lambda d, p: check_keda(d, p),
    ),
    "listName of another stage": (
        lambda d: of_kind(d, "ScaledObject")["recognize"]["spec"]["triggers"][0]["metadata"].update(
            listName="rq:queue:facepipe.detect"
        ),
        lambda d, p: check_keda(d, p),
    ),
    "listLength not a string": (
        lambda d: of_kind(d, "ScaledObject")["recognize"]["spec"]["triggers"][0]["metadata"].update(
            listLength=5
        ),
        lambda d, p: check_keda(d, p),
    ),
    "ScaledObject field typo": (
        lambda d: of_kind(d, "ScaledObject")["detect"]["spec"].update(maxReplicas=8),
        lambda d, p: check_keda(d, p),
    ),
    "scale target missing": (
        lambda d: of_kind(d, "ScaledObject")["attributes"]["spec"]["scaleTargetRef"].update(
            name="attribute"
        ),
        lambda d, p: check_keda(d, p),
    ),
    "authentication missing": (
        lambda d: of_kind(d, "ScaledObject")["detect"]["spec"]["triggers"][0][
            "authenticationRef"
        ].update(name="redis-auth"),
        lambda d, p: check_keda(d, p),
    ),
    "detect max unreachable": (
        lambda d: of_kind(d, "ScaledObject")["detect"]["spec"].update(maxReplicaCount=20),
        lambda d, p: check_detect_reachable(d, p),
    ),
    "capture of an unknown camera": (
        lambda d: _container(d, "capture-lobby").update(
            command=["facepipe", "capture", "--camera", "hall"]
        ),
        lambda d, p: check_cameras(d, p),
    ),
    "api without a token": (
        lambda d: _container(d, "api")["env"].remove(
            _env_var(_container(d, "api"), "FACEPIPE__API__TOKEN")
        ),
        lambda d, p: check_api(d, p),
    ),
    "api away from the sink's volume": (
        lambda d: of_kind(d, "Deployment")["api"]["spec"]["template"]["spec"].pop("affinity"),
        lambda d, p: check_api(d, p),
    ),
    "api port not the one it serves on": (
        lambda d: _container(d, "api")["ports"][0].update(containerPort=8080),
        lambda d, p: check_api(d, p),
    ),
    "streams follower given a camera": (
        lambda d: _container(d, "streams")["command"].extend(["--camera", "door"]),
        lambda d, p: check_cameras(d, p),
    ),
    "probe on an undeclared port": (
        lambda d: _container(d, "metrics")["readinessProbe"]["httpGet"].update(port="http"),
        lambda d, _: check_references(d),
    ),
    "secret key missing": (
        lambda d: _env_var(_container(d, "recognize"), "FACEPIPE__STORE__URL")["valueFrom"][
            "secretKeyRef"
        ].update(key="store_url"),
        lambda d, _: check_references(d),
    ),
    "root filesystem writable": (
        lambda d: _container(d, "attributes")["securityContext"].update(
            readOnlyRootFilesystem=False
        ),
        lambda d, _: check_security(d),
    ),
    "memory below the measured RSS": (
        lambda d: _container(d, "recognize")["resources"]["requests"].update(memory="256Mi"),
        lambda d, p: check_memory_sizing(d, p),
    ),
    "redis persistence on": (
        lambda d: _container(d, "redis").update(
            args=["--save", "60 1", "--appendonly", "no", "--requirepass", "$(REDIS_PASSWORD)"]
        ),
        lambda d, _: check_redis(d),
    ),
    "sink serving metrics too": (
        lambda d: _container(d, "sink").update(command=["facepipe", "sink"]),
        lambda d, _: check_metrics(d),
    ),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_a_broken_manifest_fails_its_check(docs, tmp_path, breakage):
    break_it, check = BREAKAGES[breakage]
    check(docs, tmp_path)  # passes on the real manifests
    broken = copy.deepcopy(docs)
    break_it(broken)
    with pytest.raises(AssertionError):
        check(broken, tmp_path)


# ----- the pods' commands and probes, run as processes ----------------------------------
def _run_probe(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    assert command[0] == "facepipe"
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *command[1:]],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.slow
def test_stage_pods_pass_their_probes_while_the_worker_runs_and_fail_after(docs, tmp_path):
    """Each stage Deployment's command, with the pod's environment (Redis at a private
    server with the Secret's password, the ConfigMap's file, a SQLite store), started as a
    process: its startup, readiness and liveness probes fail before it runs, pass once it
    beats its heartbeat, and fail again after it stopped."""
    password = secret_data(docs)["redis-password"]
    (tmp_path / "home").mkdir()
    config = tmp_path / "facepipe.yaml"
    config.write_text(config_text(docs))
    pods = [(dep, c) for dep, c in facepipe_containers(docs) if worker_stage(c) is not None]
    assert len(pods) == len(STAGE_NAMES)
    with PrivateRedis(password=password) as server:
        envs, procs = {}, {}
        for dep, c in pods:
            env = pod_environ(docs, c)
            assert env["REDIS_URL"].startswith(f"redis://:{password}@")
            env.update(
                REDIS_URL=server.url,
                FACEPIPE_CONFIG=str(config),
                HOME=str(tmp_path / "home"),
                FACEPIPE_HOME=str(tmp_path / "home"),
                PATH=os.environ["PATH"],
                PYTHONPATH=str(ROOT),
            )
            if "FACEPIPE__STORE__URL" in env:
                env["FACEPIPE__STORE__URL"] = f"sqlite:///{tmp_path / 'events.db'}"
            if "FACEPIPE__STORE__SNAPSHOTS_DIR" in env:
                env["FACEPIPE__STORE__SNAPSHOTS_DIR"] = str(tmp_path / "snapshots")
            envs[dep] = env
            assert _run_probe(c["readinessProbe"]["exec"]["command"], env).returncode == 1, dep
        try:
            for dep, c in pods:
                procs[dep] = subprocess.Popen(
                    [sys.executable, "-m", "pipeline", *c["command"][1:]],
                    env=envs[dep], stdout=subprocess.DEVNULL,
                    stderr=open(tmp_path / f"{dep}.log", "wb"),
                )  # fmt: skip
            for dep, c in pods:
                startup = c["startupProbe"]
                deadline = time.monotonic() + startup["periodSeconds"] * startup["failureThreshold"]
                while _run_probe(startup["exec"]["command"], envs[dep]).returncode != 0:
                    assert procs[dep].poll() is None, (tmp_path / f"{dep}.log").read_text()
                    assert time.monotonic() < deadline, f"{dep}: startup probe never passed"
                    time.sleep(1)
                for probe in ("readinessProbe", "livenessProbe"):
                    r = _run_probe(c[probe]["exec"]["command"], envs[dep])
                    assert r.returncode == 0, f"{dep} {probe}: {r.stdout}{r.stderr}"
        finally:
            for proc in procs.values():
                proc.terminate()
            for proc in procs.values():
                proc.wait(timeout=60)
        for dep, c in pods:  # stopped: its heartbeat is gone (or expires) and liveness fails
            cmd = c["livenessProbe"]["exec"]["command"]
            deadline = time.monotonic() + 30
            while _run_probe(cmd, envs[dep]).returncode == 0:
                assert time.monotonic() < deadline, f"{dep}: liveness passes without a worker"
                time.sleep(1)


@pytest.mark.slow
def test_the_api_pod_serves_with_the_secret_token_only(docs, tmp_path):
    """The api Deployment's command with the pod's environment (a private Redis with the
    Secret's password, the ConfigMap's file, a SQLite store) started as a process on a free
    port: its TCP probe's port answers, a request without the Secret's token gets 401, one
    with it gets the health of the store and Redis."""
    import json
    import socket
    import urllib.error
    import urllib.request

    (c,) = [c for dep, c in facepipe_containers(docs) if dep == "api"]
    config = tmp_path / "facepipe.yaml"
    config.write_text(config_text(docs))
    port = free_port()
    command = [a if a != "0.0.0.0" else "127.0.0.1" for a in c["command"][1:]]  # loopback only
    command[command.index("--port") + 1] = str(port)
    password = secret_data(docs)["redis-password"]
    with PrivateRedis(password=password) as server:
        env = pod_environ(docs, c)
        token = env["FACEPIPE__API__TOKEN"]
        env.update(
            REDIS_URL=server.url, FACEPIPE_CONFIG=str(config), HOME=str(tmp_path),
            FACEPIPE_HOME=str(tmp_path), PATH=os.environ["PATH"], PYTHONPATH=str(ROOT),
            FACEPIPE__STORE__URL=f"sqlite:///{tmp_path / 'events.db'}",
            FACEPIPE__STORE__SNAPSHOTS_DIR=str(tmp_path / "snapshots"),
        )  # fmt: skip
        log = tmp_path / "api.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline", *command], env=env,
            stdout=subprocess.DEVNULL, stderr=open(log, "wb"),
        )  # fmt: skip
        try:
            startup = c["startupProbe"]
            deadline = time.monotonic() + startup["periodSeconds"] * startup["failureThreshold"]
            while True:  # the startup probe: a TCP connection to the port
                assert proc.poll() is None, log.read_text()
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=2).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, "api: port never answered"
                    time.sleep(0.5)
            url = f"http://127.0.0.1:{port}/api/health"
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(url, timeout=30)
            assert refused.value.code == 401
            req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(req, timeout=30) as resp:
                        body = json.load(resp)
                    break
                except urllib.error.HTTPError as exc:  # 503 until every component answers
                    body = json.load(exc)
                    if time.monotonic() > deadline:
                        break
                    time.sleep(1)
            assert body["store"]["ok"] is True, body
            assert body["redis"]["ok"] is True, body
        finally:
            proc.terminate()
            proc.wait(timeout=60)
