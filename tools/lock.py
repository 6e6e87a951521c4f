"""The hashed locks the images install from, compiled by uv from pyproject.toml's extras:

- requirements/slim.txt       gateway, bot, scraper (the slim image: no torch, no transformers)
- requirements/ml.txt         worker, trainer (the ML image), without torch
- requirements/torch-cpu.txt  torch alone: the CPU build, from the PyTorch CPU index

torch is apart because it comes from another index than the rest: the image installs it from
https://download.pytorch.org/whl/cpu and everything else from PyPI only, each with its hashes
(pip --require-hashes). The default PyPI torch is the CUDA build (several GB of nvidia-* wheels);
this refuses a lock that holds one. Where the PyTorch index cannot be reached, `--torch-wheels DIR`
takes the CPU wheel from a folder (it must be the very file the index serves: its hash is
checked when the image is built).

    python -m tools.lock [--torch-wheels DIR]      (needs PyPI; `uv` from the dev extra)
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REQUIREMENTS = REPO / "requirements"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# The image's Python (3.11, a patch release past 3.11.3: below it redis would need async-timeout)
# on x86_64 Linux; the hashes are those of every wheel of each pinned release.
PLATFORM = ["--python-version", "3.11.7", "--python-platform", "x86_64-unknown-linux-gnu"]
LOCKS = {"slim.txt": ("gateway", "bot", "scraper"), "ml.txt": ("worker", "trainer")}
# One requirement of a uv lock: its `name==version` line and the indented lines under it.
_ENTRY = re.compile(r"^(?P<name>[a-z0-9][a-z0-9._-]*)==(?P<version>\S+)(?: \\)?\n(?:(?:    |\t).*\n)*", re.M)


def entries(text: str) -> dict[str, tuple[str, str]]:
    """name -> (version, the entry's text) of a lock."""
    return {m["name"]: (m["version"], m.group(0)) for m in _ENTRY.finditer(text)}


def compile_lock(extras: tuple[str, ...], torch_source: list[str]) -> str:
    uv = Path(sys.executable).parent / "uv"
    command = [
        str(uv),
        "pip",
        "compile",
        "pyproject.toml",
        *(arg for extra in extras for arg in ("--extra", extra)),
        "--generate-hashes",
        *PLATFORM,
        *torch_source,
        "--custom-compile-command",
        "python -m tools.lock",
        "--quiet",
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"uv pip compile failed:\n{done.stderr}")
    return done.stdout


def split_torch(text: str) -> tuple[str, str]:
    """(the lock without torch, torch's entry); refuses a CUDA build."""
    found = entries(text)
    if "torch" not in found:
        raise SystemExit("no torch in the ML lock")
    version, entry = found["torch"]
    if not version.endswith("+cpu"):
        raise SystemExit(f"torch {version} is not the CPU build: give --torch-wheels or reach {TORCH_CPU_INDEX}")
    cuda = sorted(name for name in found if name.startswith(("nvidia-", "triton")))
    if cuda:
        raise SystemExit(f"the ML lock holds CUDA packages: {cuda}")
    return text.replace(entry, ""), entry


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch-wheels", type=Path, help="a folder holding the torch CPU wheel (no PyTorch index)")
    args = parser.parse_args(argv)
    torch_source = (
        ["--find-links", str(args.torch_wheels)]
        if args.torch_wheels
        else ["--extra-index-url", TORCH_CPU_INDEX, "--index-strategy", "unsafe-best-match"]
    )
    REQUIREMENTS.mkdir(exist_ok=True)
    for name, extras in LOCKS.items():
        text = compile_lock(extras, torch_source if name == "ml.txt" else [])
        if name == "ml.txt":
            text, torch = split_torch(text)
            header = f"# torch alone, the CPU build: pip install --index-url {TORCH_CPU_INDEX} (python -m tools.lock)\n"
            (REQUIREMENTS / "torch-cpu.txt").write_text(header + torch)
        elif "torch" in entries(text):
            raise SystemExit(f"{name} holds torch: the slim image must not")
        (REQUIREMENTS / name).write_text(text)
        print(f"requirements/{name}: {len(entries(text))} distributions")


if __name__ == "__main__":
    main()
