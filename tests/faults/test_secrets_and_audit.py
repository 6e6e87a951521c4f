"""Secrets never leak: the bot token and the admin token appear in no log line, error body or
metric of the gateway and the worker, whatever is thrown at them. And the dependency audit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

ADMIN_TOKEN = "adm-SECRET-9d1f2e77c0"
BOT_TOKEN = "987654321:AAE-secretSECRETsecretSECRETsecret12"


def test_tokens_never_appear_in_logs_errors_or_metrics(start_worker, start_gateway, redis_url):
    env = {"ADMIN_TOKEN": ADMIN_TOKEN, "TELEGRAM_BOT_TOKEN": BOT_TOKEN, "LOG_LEVEL": "DEBUG"}
    worker = start_worker(env, node="secretive@test")
    gateway = start_gateway(env)
    seen = []
    with httpx.Client(base_url=gateway.base_url, timeout=30) as http:
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        seen.append(http.get("/admin/queues", headers=auth))
        seen.append(http.get("/admin/workers", headers=auth))
        seen.append(http.get("/admin/queues", headers={"Authorization": f"Bearer {ADMIN_TOKEN}x"}))
        seen.append(http.get("/admin/chats/1", headers=auth))  # no database: an error path
        # Secrets inside the input: they are the caller's own, but must not be logged back either.
        seen.append(http.post("/v1/replies", json={"dialog": [f"мой токен {BOT_TOKEN}"], "params": {"max_new_tokens": 4}}))
        seen.append(http.post("/v1/replies", json={"dialog": [BOT_TOKEN * 200]}))
        seen.append(http.get("/metrics"))
        seen.append(http.get("/openapi.json"))
    for response in seen:
        assert ADMIN_TOKEN not in response.text and BOT_TOKEN not in response.text, response.request.url
    gateway.stop()
    worker.stop()
    logs = gateway.log_text() + worker.log_text()
    assert logs.count("\n") > 10  # there was something to grep
    for secret in (ADMIN_TOKEN, BOT_TOKEN, BOT_TOKEN.split(":")[1]):
        assert secret not in logs


def _latest_release_vulnerabilities(name: str, version: str) -> tuple[str, list[str]] | None:
    """("audited", vulnerability ids) when `version` is the project's latest release on PyPI (the
    project JSON lists the known vulnerabilities of that release), ("not latest", []) when it is
    not, None when PyPI cannot be asked."""
    try:
        response = httpx.get(f"https://pypi.org/pypi/{name}/json", timeout=15, follow_redirects=True)
        if response.status_code != 200:
            return None
        data = response.json()
    except (httpx.HTTPError, ValueError):
        return None
    if data["info"]["version"] != version:
        return "not latest", []
    return "audited", [v.get("id") or v.get("aliases", ["?"])[0] for v in data.get("vulnerabilities") or []]


def test_dependency_audit():
    """pip-audit over the installed environment. Its vulnerability services (PyPI's per-version
    JSON API, OSV) are not reachable from a machine whose network reaches only the package index;
    then every installed distribution that is its project's latest release is checked against the
    vulnerabilities PyPI lists for that release (the project JSON, which is reachable), and the
    rest are named as not audited. With neither reachable the test says so instead of passing."""
    audit = Path(sys.executable).with_name("pip-audit")
    result = subprocess.run([str(audit), "--progress-spinner", "off", "--skip-editable", "--format", "json"],
                            capture_output=True, text=True, timeout=600)
    report = json.loads(result.stdout or "{}")
    dependencies = report.get("dependencies", [])
    audited = [d for d in dependencies if "skip_reason" not in d]
    if audited:
        vulnerable = {d["name"]: [v["id"] for v in d["vulns"]] for d in audited if d.get("vulns")}
        assert not vulnerable, f"known vulnerabilities: {vulnerable}"
        return

    from concurrent.futures import ThreadPoolExecutor
    from importlib import metadata

    installed = {dist.metadata["Name"].lower(): dist.version for dist in metadata.distributions()
                 if dist.metadata["Name"] and dist.metadata["Name"].lower() != "dvach-bot"}
    with ThreadPoolExecutor(8) as pool:
        answers = dict(zip(installed, pool.map(lambda item: _latest_release_vulnerabilities(*item), installed.items())))
    reached = {name: answer for name, answer in answers.items() if answer is not None}
    if not reached:
        pytest.skip("no vulnerability service reachable: neither pip-audit's services nor PyPI's JSON API answered")
    checked = {name: vulns for name, (state, vulns) in reached.items() if state == "audited"}
    vulnerable = {name: vulns for name, vulns in checked.items() if vulns}
    not_latest = sorted(f"{name}=={installed[name]}" for name, (state, _) in reached.items() if state == "not latest")
    print(f"\ndependency audit (PyPI project JSON): {len(checked)} of {len(installed)} distributions audited, "
          f"{len(vulnerable)} with known vulnerabilities; not the latest release, so not audited here: {', '.join(not_latest)}")
    assert not vulnerable, f"known vulnerabilities: {vulnerable}"
    assert len(checked) >= len(installed) // 2, "most distributions should be their latest release"
