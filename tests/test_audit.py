"""`make audit` (tools/audit.py) against a local stand-in of the package index's project JSON:
what it audits, what it reports, its exit status, and what it says when the index cannot be
reached. The real index is asked only by `make audit` itself, never by `make test`."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def installed() -> dict[str, str]:
    return {
        d.metadata["Name"].lower(): d.version
        for d in metadata.distributions()
        if d.metadata["Name"] and d.metadata["Name"].lower() != "dvach-bot"
    }


class Index:
    """/pypi/{name}/json as PyPI answers it: the latest version and that release's vulnerabilities."""

    def __init__(self, latest: dict[str, str], vulnerabilities: dict[str, list[dict]], missing: set[str]):
        self.latest, self.vulnerabilities, self.missing = latest, vulnerabilities, missing
        index = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                parts = self.path.strip("/").split("/")
                name = parts[1].lower() if len(parts) == 3 and parts[0] == "pypi" else ""
                if name not in index.latest or name in index.missing:
                    self.send_response(404)
                    self.end_headers()
                    return
                body = json.dumps(
                    {
                        "info": {"name": name, "version": index.latest[name]},
                        "vulnerabilities": index.vulnerabilities.get(name, []),
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


def audit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tools.audit", "--skip-pip-audit", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def dists() -> dict[str, str]:
    found = installed()
    assert {"httpx", "pydantic", "redis"} <= set(found)
    return found


@pytest.fixture
def index(dists) -> Iterator[Index]:
    latest = dict(dists)
    latest["pydantic"] = "99.0.0"  # a newer release exists: not audited
    server = Index(latest, {"httpx": [{"id": "GHSA-test-0001", "aliases": ["CVE-2099-0001"]}]}, missing={"redis"})
    yield server
    server.httpd.shutdown()


def test_known_vulnerabilities_of_latest_releases_fail_the_audit(index, dists):
    done = audit("--index-url", index.url)
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    assert f"{len(dists) - 2} of {len(dists)} distributions audited" in out and "1 with known vulnerabilities" in out
    assert f"VULNERABLE httpx=={dists['httpx']}: GHSA-test-0001" in out
    assert f"pydantic=={dists['pydantic']} (latest 99.0.0)" in out  # named as not audited
    assert "no answer from the index: redis" in out


def test_nothing_known_passes(index, dists):
    index.vulnerabilities.clear()
    done = audit("--index-url", index.url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 with known vulnerabilities" in done.stdout


def test_an_unreachable_index_says_so_and_fails():
    done = audit("--index-url", "http://127.0.0.1:1")  # nothing listens there
    assert done.returncode == 2
    assert "cannot be reached" in done.stdout and "Nothing was audited" in done.stdout
    assert "ConnectError" in done.stdout
