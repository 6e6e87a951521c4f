"""`make audit`: known vulnerabilities of the installed Python distributions.

It asks the outside world, so it is its own target (CI runs it), not part of `make test`.

1. pip-audit over the environment. Its vulnerability services (PyPI's per-version JSON, OSV) are
   not reachable from a machine whose network reaches only the package index; pip-audit then
   skips every package (and still says "No known vulnerabilities found").
2. Then PyPI's project JSON, which is reachable there: it lists the known vulnerabilities of a
   project's latest release, so every installed distribution that is its project's latest
   release is audited that way; the others are named as not audited.

Exit status: 0 nothing known, 1 known vulnerabilities, 2 nothing could be audited (the index
did not answer): the output says which.

    python -m tools.audit [--index-url URL] [--skip-pip-audit]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import httpx

PROJECT = "dvach-bot"
DEFAULT_INDEX = "https://pypi.org"


@dataclass
class Answer:
    """What the index says of one installed distribution."""

    state: str  # "audited", "not latest", "unreachable"
    latest: str = ""
    vulnerabilities: list[str] = field(default_factory=list)
    error: str = ""


def installed() -> dict[str, str]:
    """Installed distributions (lower-case name -> version), the project itself excepted."""
    found = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name and name.lower() != PROJECT:
            found[name.lower()] = dist.version
    return found


def run_pip_audit() -> tuple[dict[str, list[str]], int] | None:
    """(vulnerable name -> ids, packages audited) from pip-audit, or None when it audited nothing."""
    audit = Path(sys.executable).with_name("pip-audit")
    if not audit.exists():
        return None
    try:
        done = subprocess.run(
            [str(audit), "--progress-spinner", "off", "--skip-editable", "--format", "json"],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        report = json.loads(done.stdout or "{}")
    except (subprocess.TimeoutExpired, ValueError):
        return None
    audited = [d for d in report.get("dependencies", []) if "skip_reason" not in d]
    if not audited:
        return None
    vulnerable = {d["name"]: [v["id"] for v in d["vulns"]] for d in audited if d.get("vulns")}
    return vulnerable, len(audited)


def ask_index(client: httpx.Client, index: str, name: str, version: str) -> Answer:
    try:
        response = client.get(f"{index}/pypi/{name}/json")
    except httpx.HTTPError as exc:
        return Answer("unreachable", error=f"{type(exc).__name__}: {exc}")
    if response.status_code != 200:
        return Answer("unreachable", error=f"HTTP {response.status_code}")
    try:
        data = response.json()
        latest = data["info"]["version"]
    except (ValueError, KeyError, TypeError):
        return Answer("unreachable", error="not a project JSON")
    if latest != version:
        return Answer("not latest", latest=latest)
    ids = [v.get("id") or (v.get("aliases") or ["?"])[0] for v in data.get("vulnerabilities") or []]
    return Answer("audited", latest=latest, vulnerabilities=ids)


def audit_with_index(index: str, dists: dict[str, str]) -> dict[str, Answer]:
    with httpx.Client(timeout=15, follow_redirects=True) as client, ThreadPoolExecutor(8) as pool:
        answers = pool.map(lambda item: ask_index(client, index, *item), dists.items())
        return dict(zip(dists, answers, strict=True))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--index-url",
        default=os.environ.get("AUDIT_INDEX_URL", DEFAULT_INDEX),
        help=f"package index whose project JSON is asked (default {DEFAULT_INDEX})",
    )
    parser.add_argument("--skip-pip-audit", action="store_true", help="go straight to the index's project JSON")
    args = parser.parse_args(argv)
    index = args.index_url.rstrip("/")
    dists = installed()

    if not args.skip_pip_audit:
        result = run_pip_audit()
        if result is not None:
            vulnerable, count = result
            print(
                f"dependency audit (pip-audit): {count} of {len(dists)} distributions audited, "
                f"{len(vulnerable)} with known vulnerabilities"
            )
            for name, ids in sorted(vulnerable.items()):
                print(f"  VULNERABLE {name}=={dists.get(name.lower(), '?')}: {', '.join(ids)}")
            return 1 if vulnerable else 0
        print("dependency audit: pip-audit's vulnerability services did not answer; asking the index's project JSON")

    answers = audit_with_index(index, dists)
    unreachable = {name: a for name, a in answers.items() if a.state == "unreachable"}
    if len(unreachable) == len(answers):
        errors = sorted({a.error for a in unreachable.values()})
        print(
            f"dependency audit: NOT RUN: the package index {index} cannot be reached "
            f"({'; '.join(errors[:3])}), and pip-audit's services did not answer. Nothing was audited."
        )
        return 2
    audited = {name: a for name, a in answers.items() if a.state == "audited"}
    vulnerable = {name: a.vulnerabilities for name, a in audited.items() if a.vulnerabilities}
    not_latest = sorted(
        f"{name}=={dists[name]} (latest {a.latest})" for name, a in answers.items() if a.state == "not latest"
    )
    print(
        f"dependency audit ({index} project JSON): {len(audited)} of {len(dists)} distributions audited "
        f"(their latest release), {len(vulnerable)} with known vulnerabilities"
    )
    for name, ids in sorted(vulnerable.items()):
        print(f"  VULNERABLE {name}=={dists[name]}: {', '.join(ids)}")
    if not_latest:
        print(f"  not audited, not the latest release: {', '.join(not_latest)}")
    if unreachable:
        print(f"  not audited, no answer from the index: {', '.join(sorted(unreachable))}")
    return 1 if vulnerable else 0


if __name__ == "__main__":
    sys.exit(main())
