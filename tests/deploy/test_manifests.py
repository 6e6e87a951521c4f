"""The deployment files, checked offline by the tools that define them.

- docker-compose.yml against the Compose specification's JSON schema (check-jsonschema's vendored
  copy), as written and after Compose's variable interpolation with .env.example;
- the Dockerfile with hadolint and BuildKit's parser;
- deploy/k8s rendered by kustomize (`kubectl kustomize`), every resource of the base and of each
  overlay validated against the Kubernetes JSON schemas (kubernetes-validate, strict: unknown
  fields are errors) and KEDA's resources against the schemas in deploy/k8s/schemas;
- consistency between them and the code: settings names, commands, ports, probes, time limits.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from shared.celery_app import QUEUES
from shared.settings import BotSettings, GatewaySettings, QueueSettings, TrainOptions, WorkerSettings
from shared.settings.docs import GROUPS, all_env_names, env_names, from_variables
from tests.deploy import manifests as m

# What a deployment configures: every service's settings. A training run's TRAIN_* options are
# known names too (a Job may set them) but need not be in .env.example.
SETTINGS = {name for group in GROUPS if group.cls is not TrainOptions for name in env_names(group.cls)}
KNOWN_ENV = all_env_names() | set(m.EXTRA_ENV)


def check_values(variables: dict[str, str | None]) -> None:
    """Each value is valid for every settings class that reads it."""
    for group in GROUPS:
        from_variables(group.cls, variables)


def run_tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*args], capture_output=True, text=True, timeout=120, check=False)


# --- Compose ------------------------------------------------------------------------------------


def test_compose_file_matches_the_compose_spec_schema(tmp_path):
    as_written = run_tool(
        sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(m.COMPOSE_FILE)
    )
    assert as_written.returncode == 0, as_written.stdout + as_written.stderr
    # What Compose validates after interpolating `.env` (here: .env.example).
    interpolated = tmp_path / "docker-compose.interpolated.yml"
    interpolated.write_text(yaml.safe_dump(m.compose_config(), sort_keys=False))
    done = run_tool(
        sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(interpolated)
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_schema_check_catches_mistakes(tmp_path):
    """The schema check is real: a misspelt key or a wrong type fails it."""
    for mutate in (
        lambda c: c["services"]["gateway"].update(restartt="always"),
        lambda c: c["services"]["inference_worker"].update(stop_grace_period=["120s"]),
    ):
        config = m.compose_config()
        mutate(config)
        broken = tmp_path / "broken.yml"
        broken.write_text(yaml.safe_dump(config, sort_keys=False))
        done = run_tool(
            sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(broken)
        )
        assert done.returncode != 0, done.stdout


def test_compose_services_health_checks_and_start_order():
    config = m.compose_config()
    services = config["services"]
    expected = {
        "redis",
        "postgres",
        "gateway",
        "inference_worker",
        "bot",
        "scraper",
        "prometheus",
        "grafana",
        "migrate",
    }
    assert expected <= set(services)
    for name, spec in services.items():
        for dependency, wanted in (spec.get("depends_on") or {}).items():
            condition = wanted["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[dependency], (
                    f"{name} waits for {dependency} to be healthy, which has no healthcheck"
                )
            elif condition == "service_completed_successfully":
                assert services[dependency].get("restart") == "no", f"{dependency} is a one-shot and must not restart"
        if name not in ("trainer", "migrate"):  # one-shots
            assert "healthcheck" in spec, f"{name} has no health check"
    for name in ("gateway", "inference_worker", "bot", "scraper", "trainer"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name
    for volume in ("postgres-data", "models", "grafana-data"):
        assert volume in config["volumes"]
    assert "models:/models" in services["inference_worker"]["volumes"]
    assert "models:/models" in services["trainer"]["volumes"]


def test_compose_worker_scales_and_shuts_down_warm():
    worker = m.compose_config()["services"]["inference_worker"]
    # `--scale inference_worker=N` needs no fixed name and no published port.
    assert "container_name" not in worker
    assert "ports" not in worker
    assert worker["stop_signal"] == "SIGTERM"
    grace = int(re.fullmatch(r"(\d+)s", worker["stop_grace_period"]).group(1))
    assert grace > QueueSettings().task_time_limit_s
    # INFERENCE_THREADS follows the CPU limit (0 would mean every core of the host).
    assert str(worker["environment"]["INFERENCE_THREADS"]) == str(worker["cpus"])


def test_env_example_lists_every_setting_and_nothing_unknown():
    names = set(m.env_example())
    assert not (SETTINGS - names), f"settings missing from .env.example: {sorted(SETTINGS - names)}"
    unknown = names - KNOWN_ENV
    assert not unknown, f".env.example names that are no setting: {sorted(unknown)}"
    # Every variable docker-compose.yml interpolates is explained in .env.example.
    missing = m.compose_variables() - names
    assert not missing, f"docker-compose.yml uses variables .env.example does not list: {sorted(missing)}"
    # The values set in .env.example are valid settings.
    check_values(m.env_example())


def test_compose_app_environment_names_are_settings():
    config = m.compose_config()
    for service in m.APP_SERVICES:
        env = m.service_environment(config, service)
        unknown = set(env) - KNOWN_ENV
        assert not unknown, f"{service}: environment names that are no setting: {sorted(unknown)}"


# --- Dockerfile ----------------------------------------------------------------------------------


def test_dockerfile_passes_hadolint():
    hadolint = Path(sys.executable).parent / "hadolint"
    done = run_tool(str(hadolint), "--no-color", str(m.DOCKERFILE))
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_targets_match_compose():
    config = m.compose_config()
    stages = m.dockerfile_stages()
    for service in m.APP_SERVICES:
        spec = config["services"][service]
        target = spec["build"]["target"]
        assert target in stages, f"{service}: no stage {target!r} in the Dockerfile"
        # Non-root, no secrets in the image's environment.
        user = m.stage_instructions(target, "USER")
        assert user and user[-1].value[0].split(":")[0] not in ("root", "0"), f"{target} runs as root"
        for name in m.dockerfile_env(target):
            assert not re.search(r"TOKEN|PASSWORD|SECRET|_KEY$", name), f"{target}: secret-like ENV {name}"
        for arg in m.stage_instructions(target, "ARG"):
            assert not re.search(r"TOKEN|PASSWORD|SECRET", arg.value[0].upper()), f"{target}: secret-like ARG"
    # The compose command of a long-running service is the image's own CMD.
    for service, target in (
        ("gateway", "gateway"),
        ("inference_worker", "worker"),
        ("bot", "bot"),
        ("scraper", "scraper"),
    ):
        assert config["services"][service]["command"] == m.dockerfile_cmd(target), service
    # CPU-only torch from the pinned version in pyproject.toml.
    runs = " ".join(" ".join(i.value) for i in m.stage_instructions("gateway", "RUN"))
    assert "download.pytorch.org/whl/cpu" in runs
    ignore = (m.REPO / ".dockerignore").read_text().splitlines()
    assert ".env" in ignore, ".env must never reach the build context"


def test_dockerfile_import_check_passes_in_a_bare_environment(tmp_path):
    """The image build's import check, run as the build runs it: the code on PYTHONPATH, no
    settings in the environment, no .env, another working directory."""
    runs = [
        " ".join(i.value)
        for i in m.stage_instructions("gateway", "RUN")
        if "import shared.settings" in " ".join(i.value)
    ]
    assert len(runs) == 1
    command = runs[0].split(" && python -m compileall")[0]
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "PYTHONPATH": str(m.REPO), "HOME": str(tmp_path)}
    done = subprocess.run(
        ["sh", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_health_checks_are_the_same_everywhere():
    """The worker's model-loaded check is one command in the image, compose and the k8s probes."""
    config = m.compose_config()
    image = m.dockerfile_healthcheck("worker")
    compose = config["services"]["inference_worker"]["healthcheck"]["test"]
    assert image[0] == "CMD" and compose[0] == "CMD"
    assert compose[1:] == image[1:]
    assert config["services"]["gateway"]["healthcheck"]["test"][1:] == m.dockerfile_healthcheck("gateway")[1:]
    for overlay in m.OVERLAYS:
        worker = m.named(m.render(f"overlays/{overlay}"), "Deployment", "dvach-worker")
        container = m.containers(worker, init=False)[0]
        assert container["startupProbe"]["exec"]["command"] == image[1:]
        assert container["readinessProbe"]["exec"]["command"] == image[1:]


# --- Kubernetes: build and schemas --------------------------------------------------------------


@pytest.mark.parametrize("path", ["base", *(f"overlays/{o}" for o in m.OVERLAYS)])
def test_kustomize_build_validates_against_the_schemas(path):
    resources = m.render(path)
    assert resources, f"{path} renders nothing"
    keda = {
        "ScaledObject": json.loads((m.KEDA_SCHEMAS / "keda.sh" / "scaledobject_v1alpha1.json").read_text()),
        "TriggerAuthentication": json.loads(
            (m.KEDA_SCHEMAS / "keda.sh" / "triggerauthentication_v1alpha1.json").read_text()
        ),
    }
    errors = []
    for resource in resources:
        name = f"{resource['kind']}/{resource['metadata']['name']}"
        if resource["apiVersion"].startswith("keda.sh/"):
            validator = jsonschema.Draft202012Validator(keda[resource["kind"]])
            errors += [f"{name}: {'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(resource)]
            continue
        for version in m.K8S_VERSIONS:
            try:
                kubernetes_validate.validate(resource, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                errors.append(f"{name} (k8s {version}): {'/'.join(map(str, exc.path))}: {exc.message}")
            except kubernetes_validate.SchemaNotFoundError as exc:
                errors.append(f"{name}: {exc.message}")
    assert not errors, "\n".join(errors)


def test_keda_schema_rejects_what_keda_would():
    """The vendored KEDA schema is a real check: broken ScaledObjects fail it."""
    schema = json.loads((m.KEDA_SCHEMAS / "keda.sh" / "scaledobject_v1alpha1.json").read_text())
    good = m.named(m.render("overlays/production"), "ScaledObject", "dvach-worker")
    jsonschema.validate(good, schema)
    broken = json.loads(json.dumps(good))
    del broken["spec"]["triggers"][0]["metadata"]["listName"]
    typo = json.loads(json.dumps(good))
    typo["spec"]["minReplicas"] = 1  # the HPA's field name, not KEDA's
    numeric = json.loads(json.dumps(good))
    numeric["spec"]["triggers"][1]["metadata"]["listLength"] = 16  # metadata values are strings
    for bad in (broken, typo, numeric):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


def test_kubernetes_schema_rejects_a_typo():
    """Strict validation is on: an unknown field fails (as `kubectl apply` with field validation)."""
    deployment = json.loads(json.dumps(m.named(m.render("base"), "Deployment", "dvach-worker")))
    deployment["spec"]["template"]["spec"]["terminationGracePeriod"] = 120
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, m.K8S_VERSIONS[-1], strict=True)


# --- Kubernetes: consistency with the code ----------------------------------------------------------


def test_config_map_and_container_env_names_are_settings():
    for overlay in m.OVERLAYS:
        resources = m.render(f"overlays/{overlay}")
        data = m.config_map_data(resources)
        unknown = set(data) - KNOWN_ENV
        assert not unknown, f"{overlay}: ConfigMap keys that are no setting: {sorted(unknown)}"
        check_values(data)  # and valid values
        for resource in resources:
            if not any(
                c["image"].split("/")[-1].startswith(("gateway", "worker", "bot", "scraper", "trainer"))
                for c in m.containers(resource)
            ):
                continue
            for container in m.containers(resource):
                names = {e["name"] for e in container.get("env", [])}
                unknown = names - KNOWN_ENV
                assert not unknown, f"{resource['metadata']['name']}/{container['name']}: {sorted(unknown)}"


def test_worker_grace_period_outlasts_the_hard_time_limit():
    for overlay in m.OVERLAYS:
        resources = m.render(f"overlays/{overlay}")
        limit = int(m.config_map_data(resources).get("TASK_TIME_LIMIT_S", QueueSettings().task_time_limit_s))
        assert limit == QueueSettings().task_time_limit_s or limit > 0
        worker = m.named(resources, "Deployment", "dvach-worker")
        grace = m.pod_spec(worker)["terminationGracePeriodSeconds"]
        assert grace > limit, f"{overlay}: terminationGracePeriodSeconds {grace} <= TASK_TIME_LIMIT_S {limit}"
        assert grace > QueueSettings().task_time_limit_s
        # The worker stops on SIGTERM (warm shutdown): no preStop hook that would eat the grace period.
        assert "lifecycle" not in m.containers(worker, init=False)[0]


def test_probes_point_at_real_endpoints_and_ports():
    from services.gateway.app import create_app

    gateway_paths = set(create_app(GatewaySettings(redis_url="redis://127.0.0.1:1/0")).openapi()["paths"])
    for overlay in m.OVERLAYS:
        resources = m.render(f"overlays/{overlay}")
        data = m.config_map_data(resources)
        expected_port = {
            "gateway": from_variables(GatewaySettings, data).gateway_port,
            "worker": from_variables(WorkerSettings, data).worker_metrics_port,
            "bot": from_variables(BotSettings, data).bot_metrics_port,
        }
        for name, component in (("dvach-gateway", "gateway"), ("dvach-worker", "worker"), ("dvach-bot", "bot")):
            deployment = m.named(resources, "Deployment", name)
            container = m.containers(deployment, init=False)[0]
            ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
            assert expected_port[component] in ports.values(), f"{name}: port {expected_port[component]} not declared"
            for probe_name in ("livenessProbe", "readinessProbe", "startupProbe"):
                probe = container.get(probe_name)
                if not probe or "httpGet" not in probe:
                    continue
                port = probe["httpGet"]["port"]
                port = ports[port] if isinstance(port, str) else port
                assert port == expected_port[component], f"{name} {probe_name}: port {port}"
                path = probe["httpGet"]["path"]
                if component == "gateway":
                    assert path in gateway_paths, f"{name} {probe_name}: {path} is no gateway route"
                else:
                    assert path == "/metrics"
            assert container.get("livenessProbe") and container.get("readinessProbe"), f"{name} lacks probes"
            annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
            assert int(annotations["prometheus.io/port"]) == expected_port[component]


def test_commands_are_the_ones_compose_and_the_code_use():
    config = m.compose_config()
    import typer.main

    from services.scraper.cli import app as scraper_app
    from services.trainer.cli import cli as trainer_app

    for overlay in m.OVERLAYS:
        resources = m.render(f"overlays/{overlay}")
        for deployment, service in (
            ("dvach-gateway", "gateway"),
            ("dvach-worker", "inference_worker"),
            ("dvach-bot", "bot"),
        ):
            container = m.containers(m.named(resources, "Deployment", deployment), init=False)[0]
            assert container["command"] == config["services"][service]["command"], deployment
        for deployment in ("dvach-gateway", "dvach-bot"):
            init = m.pod_spec(m.named(resources, "Deployment", deployment))["initContainers"][0]
            assert init["command"] == config["services"]["migrate"]["command"]
        scraper = m.containers(m.named(resources, "CronJob", "dvach-scraper"))[0]["command"]
        assert scraper[:3] == ["python", "-m", "services.scraper"] and "--once" in scraper
        assert scraper[3] in typer.main.get_command(scraper_app).commands
        trainer = m.named(resources, "CronJob", "dvach-trainer")
        assert trainer["spec"]["suspend"] is True, "training runs on demand only"
        command = m.containers(trainer)[0]["command"]
        assert command[:3] == ["python", "-m", "services.trainer"]
        assert command[3] in typer.main.get_command(trainer_app).commands


def test_worker_threads_match_its_cpu_limit_and_memory_is_bounded():
    for overlay in m.OVERLAYS:
        resources = m.render(f"overlays/{overlay}")
        for resource in resources:
            for container in m.containers(resource):
                res = container.get("resources", {})
                name = f"{overlay}: {resource['metadata']['name']}/{container['name']}"
                assert res.get("requests", {}).get("memory") and res.get("requests", {}).get("cpu"), (
                    f"{name}: no requests"
                )
                assert res.get("limits", {}).get("memory"), f"{name}: no memory limit"
        worker = m.containers(m.named(resources, "Deployment", "dvach-worker"), init=False)[0]
        threads = {e["name"]: e.get("value") for e in worker["env"]}["INFERENCE_THREADS"]
        assert threads == str(worker["resources"]["limits"]["cpu"]) == str(worker["resources"]["requests"]["cpu"])


def test_autoscaling_targets_the_workers_queues():
    for overlay in m.OVERLAYS:
        resources = m.render(f"overlays/{overlay}")
        scaled = m.by_kind(resources, "ScaledObject")
        hpas = m.by_kind(resources, "HorizontalPodAutoscaler")
        assert len(scaled) + len(hpas) == 1, f"{overlay}: exactly one autoscaler for the workers (KEDA or HPA)"
        worker = m.named(resources, "Deployment", "dvach-worker")
        assert "replicas" not in worker["spec"], "the autoscaler owns the worker count"
        for hpa in hpas:
            assert hpa["spec"]["scaleTargetRef"]["name"] == "dvach-worker"
            assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
        for obj in scaled:
            assert obj["spec"]["scaleTargetRef"]["name"] == "dvach-worker"
            assert obj["spec"]["minReplicaCount"] >= 1
            lists = sorted(t["metadata"]["listName"] for t in obj["spec"]["triggers"] if t["type"] == "redis")
            assert lists == sorted(QUEUES), "one trigger per Celery queue (plain Redis lists)"
            for trigger in obj["spec"]["triggers"]:
                ref = trigger.get("authenticationRef")
                if ref:
                    m.named(resources, "TriggerAuthentication", ref["name"])


def _check_secret_refs(overlay: str, container: dict, secrets: dict[str, set[str]], docs: str) -> None:
    """Every secret a container reads is in a Secret of the overlay, or docs/deploy.md tells to make it."""
    for env in container.get("env", []):
        ref = env.get("valueFrom", {}).get("secretKeyRef")
        if not ref:
            continue
        if ref["name"] in secrets:  # generated in this overlay (dev)
            assert ref["key"] in secrets[ref["name"]] or ref.get("optional"), f"{overlay}: no key {ref['key']}"
        else:  # created outside the repository (production): docs/deploy.md must say so
            assert ref["key"] in docs, f"docs/deploy.md does not tell to put {ref['key']} into {ref['name']}"


def test_selectors_secrets_and_volumes_resolve():
    docs = m.DOCS.read_text() if m.DOCS.exists() else ""
    for overlay in m.OVERLAYS:
        resources = m.render(f"overlays/{overlay}")
        workloads = [r for r in resources if m.pod_spec(r) is not None]
        for kind in ("PodDisruptionBudget", "Service"):
            for obj in m.by_kind(resources, kind):
                selector = obj["spec"]["selector"]
                selector = selector.get("matchLabels", selector)
                matches = [w for w in workloads if selector.items() <= m.pod_labels(w).items()]
                assert matches, f"{overlay}: {kind}/{obj['metadata']['name']} selects no pods"
        secrets = {s["metadata"]["name"]: set(s.get("data", {})) for s in m.by_kind(resources, "Secret")}
        claims = {c["metadata"]["name"] for c in m.by_kind(resources, "PersistentVolumeClaim")}
        for workload in workloads:
            spec = m.pod_spec(workload)
            for volume in spec.get("volumes", []):
                if "persistentVolumeClaim" in volume:
                    assert volume["persistentVolumeClaim"]["claimName"] in claims
            for container in m.containers(workload):
                _check_secret_refs(overlay, container, secrets, docs)
        for auth in m.by_kind(resources, "TriggerAuthentication"):
            for ref in auth["spec"].get("secretTargetRef", []):
                assert ref["key"] in docs or ref["key"] in secrets.get(ref["name"], set())


def test_pods_run_unprivileged():
    for overlay in m.OVERLAYS:
        for resource in m.render(f"overlays/{overlay}"):
            spec = m.pod_spec(resource)
            if spec is None:
                continue
            assert spec["securityContext"]["runAsNonRoot"] is True, resource["metadata"]["name"]
            assert spec.get("automountServiceAccountToken") is False
            for container in m.containers(resource):
                sc = container["securityContext"]
                assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]


def test_production_images_come_from_a_registry_with_a_tag():
    for resource in m.render("overlays/production"):
        for container in m.containers(resource):
            image = container["image"]
            assert re.fullmatch(r"[a-z0-9.-]+\.[a-z]+/[a-z0-9./_-]+:[A-Za-z0-9._-]+", image), image
