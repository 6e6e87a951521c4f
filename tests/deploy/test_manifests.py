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
        "prepare-model",
    }
    assert expected <= set(services)
    for name, spec in services.items():
        for dependency, wait in (spec.get("depends_on") or {}).items():
            condition = wait["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[dependency], (
                    f"{name} waits for {dependency} to be healthy, which has no healthcheck"
                )
            elif condition == "service_completed_successfully":
                assert services[dependency].get("restart") == "no", f"{dependency} is a one-shot and must not restart"
        if name not in ("trainer", "migrate", "prepare-model"):  # one-shots
            assert "healthcheck" in spec, f"{name} has no health check"
    for name in ("gateway", "inference_worker", "bot", "scraper", "trainer"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name
    for volume in ("postgres-data", "models", "grafana-data"):
        assert volume in config["volumes"]
    assert "models:/models" in services["inference_worker"]["volumes"]
    assert "models:/models" in services["trainer"]["volumes"]
    # The model is converted before the workers start, on the volumes they read.
    prepare = services["prepare-model"]
    assert services["inference_worker"]["depends_on"]["prepare-model"]["condition"] == "service_completed_successfully"
    assert set(prepare["volumes"]) == set(services["inference_worker"]["volumes"])
    assert prepare["image"] == services["inference_worker"]["image"]


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
    # Dependencies only from the hashed locks: the slim stage without torch, the ML stage with
    # torch alone from the CPU index (tests/deploy/test_images.py checks the locks themselves).
    slim = " ".join(" ".join(i.value) for i in m.stage_instructions("gateway", "RUN"))
    assert "--require-hashes -r /tmp/requirements/slim.txt" in slim and "--no-deps" in slim
    assert "torch" not in slim and "download.pytorch.org" not in slim
    ml = " ".join(" ".join(i.value) for i in m.stage_instructions("worker", "RUN"))
    assert "--index-url https://download.pytorch.org/whl/cpu -r /tmp/requirements/torch-cpu.txt" in ml
    assert "--require-hashes -r /tmp/requirements/ml.txt" in ml
    for target in ("gateway", "bot", "scraper"):
        assert m.stage_chain(target)[:2] == ["base", "slim"], target
    for target in ("worker", "trainer"):
        assert m.stage_chain(target)[:2] == ["base", "ml"], target
    ignore = (m.REPO / ".dockerignore").read_text().splitlines()
    assert ".env" in ignore, ".env must never reach the build context"


@pytest.mark.parametrize("target", ["gateway", "worker"])
def test_dockerfile_import_check_passes_with_only_its_lock_installed(target, tmp_path):
    """Each stage's import check, run as the build runs it (the code on PYTHONPATH, no settings,
    no .env, another working directory), with every third-party module its lock does not install
    hidden: the slim image imports no torch, transformers or onnxruntime."""
    runs = [
        " ".join(i.value) for i in m.stage_instructions(target, "RUN") if "import shared.settings" in " ".join(i.value)
    ]
    assert len(runs) == 1
    command = runs[0].split(" && python -m compileall")[0].strip()
    match = re.fullmatch(r'(REDIS_URL=\S+) python -c "(.+)"', command)
    assert match, command
    hidden = m.modules_outside_lock(m.stage_locks(target))
    assert target != "gateway" or {"torch", "transformers", "onnxruntime", "ctranslate2"} <= hidden
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "PYTHONPATH": str(m.REPO),
        "HOME": str(tmp_path),
        "REDIS_URL": match.group(1).split("=", 1)[1],
    }
    done = subprocess.run(
        [sys.executable, "-c", m.hide_modules_code(hidden) + match.group(2)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
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


@pytest.mark.parametrize("path", ["base", *(f"overlays/{o}" for o in m.OVERLAYS), *m.COMPONENTS])
def test_kustomize_build_validates_against_the_schemas(path):
    resources = m.render(path)
    assert resources, f"{path} renders nothing"
    errors = []
    for resource in resources:
        name = f"{resource['kind']}/{resource['metadata']['name']}"
        schema = m.custom_resource_schema(resource)
        if schema is not None:
            validator = jsonschema.Draft202012Validator(schema)
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


def test_custom_resource_schemas_reject_what_their_api_server_would():
    """The vendored KEDA and Prometheus Operator schemas are real checks: broken resources fail them."""
    resources = m.render("overlays/production")
    good = m.named(resources, "ScaledObject", "dvach-worker")
    schema = m.custom_resource_schema(good)
    jsonschema.validate(good, schema)
    broken = json.loads(json.dumps(good))
    del broken["spec"]["triggers"][0]["metadata"]["query"]
    typo = json.loads(json.dumps(good))
    typo["spec"]["minReplicas"] = 1  # the HPA's field name, not KEDA's
    numeric = json.loads(json.dumps(good))
    numeric["spec"]["triggers"][0]["metadata"]["threshold"] = 11  # metadata values are strings
    for bad in (broken, typo, numeric):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
    monitor = m.named(resources, "PodMonitor", "dvach-worker")
    jsonschema.validate(monitor, m.custom_resource_schema(monitor))
    misspelt = json.loads(json.dumps(monitor))
    misspelt["spec"]["podMetricsEndpoints"][0]["relabelling"] = []
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(misspelt, m.custom_resource_schema(misspelt))
    rule = m.named(resources, "PrometheusRule", "dvach-bot")
    no_expr = json.loads(json.dumps(rule))
    del no_expr["spec"]["groups"][0]["rules"][0]["expr"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(no_expr, m.custom_resource_schema(no_expr))


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
        check_values({k: v for k, v in data.items() if k in SETTINGS})  # and valid values
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
            # Scraped by a PodMonitor through a named port of the container (where monitoring is on).
            for monitor in m.by_kind(resources, "PodMonitor"):
                if monitor["spec"]["selector"]["matchLabels"].items() <= m.pod_labels(deployment).items():
                    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
                    assert ports[endpoint["port"]] == expected_port[component], f"{monitor['metadata']['name']}"
                    assert endpoint["path"] == "/metrics"
        if overlay == "production":
            monitored = {
                m.pod_labels(w)["app.kubernetes.io/component"]
                for w in m.by_kind(resources, "Deployment")
                for mon in m.by_kind(resources, "PodMonitor")
                if mon["spec"]["selector"]["matchLabels"].items() <= m.pod_labels(w).items()
            }
            assert monitored == {"gateway", "worker", "bot"}


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
        # One migration Job (compose's command); the pods that use the database wait for it.
        job = m.named(resources, "Job", "dvach-migrate")
        assert m.containers(job)[0]["command"] == config["services"]["migrate"]["command"]
        for deployment in ("dvach-gateway", "dvach-bot", "dvach-worker"):
            init = m.pod_spec(m.named(resources, "Deployment", deployment))["initContainers"]
            assert init[0]["name"] == "wait-for-schema"
            assert init[0]["command"][:4] == ["python", "-m", "shared.db.schema", "wait"]
            assert not any("alembic" in c["command"] for c in init), f"{deployment} migrates in a pod"
        # The worker's model is prepared by an init container, as compose's prepare-model does.
        prepare = m.pod_spec(m.named(resources, "Deployment", "dvach-worker"))["initContainers"][1]
        assert prepare["command"] == config["services"]["prepare-model"]["command"]
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


def test_autoscaling_targets_the_workers():
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
            # The metric the gateway exports (tests/deploy/test_broker.py), from a Prometheus that
            # scrapes the gateways: the monitoring component comes with KEDA.
            (trigger,) = obj["spec"]["triggers"]
            assert trigger["type"] == "prometheus" and "dvach_jobs_in_system" in trigger["metadata"]["query"]
            assert m.named(resources, "PodMonitor", "dvach-gateway")


def test_selectors_select_pods():
    for overlay in m.OVERLAYS:
        resources = m.render(f"overlays/{overlay}")
        workloads = [r for r in resources if m.pod_spec(r) is not None]
        for kind in ("PodDisruptionBudget", "Service", "PodMonitor"):
            for obj in m.by_kind(resources, kind):
                selector = obj["spec"]["selector"]
                selector = selector.get("matchLabels", selector)
                matches = [w for w in workloads if selector.items() <= m.pod_labels(w).items()]
                assert matches, f"{overlay}: {kind}/{obj['metadata']['name']} selects no pods"


def secret_key_refs(workload: dict):
    for container in m.containers(workload):
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                yield ref


def test_secrets_and_volumes_resolve():
    docs = m.DOCS.read_text() if m.DOCS.exists() else ""
    for overlay in m.OVERLAYS:
        resources = m.render(f"overlays/{overlay}")
        secrets = {s["metadata"]["name"]: set(s.get("data", {})) for s in m.by_kind(resources, "Secret")}
        claims = {c["metadata"]["name"] for c in m.by_kind(resources, "PersistentVolumeClaim")}
        for workload in (r for r in resources if m.pod_spec(r) is not None):
            for volume in m.pod_spec(workload).get("volumes", []):
                if "persistentVolumeClaim" in volume:
                    assert volume["persistentVolumeClaim"]["claimName"] in claims
            for ref in secret_key_refs(workload):
                if ref["name"] in secrets:  # generated in this overlay (dev)
                    assert ref["key"] in secrets[ref["name"]] or ref.get("optional"), f"{overlay}: no key {ref['key']}"
                else:  # created outside the repository (production): docs/deploy.md must say so
                    assert ref["key"] in docs, f"docs/deploy.md does not tell to put {ref['key']} into {ref['name']}"


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
