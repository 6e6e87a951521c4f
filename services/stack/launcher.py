"""The whole stack on one machine: Redis, Postgres, an inference worker, the gateway (and the
bot when a token is set), each a real process, with embedded servers where none is configured.

What it prints is for a person at a terminal: one line per service as it becomes ready, the
progress bars of long first-run steps (the services draw them), then the banner. The services log
at LOG_LEVEL in the console format; third-party libraries only warn unless LOG_LEVEL=DEBUG
(shared/logging_setup.py).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from shared.embedded import backing_servers
from shared.settings import BotSettings, GatewaySettings, ServiceSettings, WorkerSettings

log = logging.getLogger("stack")


def say(service: str, state: str, detail: str = "") -> None:
    """One line of the launcher's own output."""
    print(f"  {service:<9} {state:<8} {detail}".rstrip(), flush=True)


def where(url: str) -> str:
    """host:port/path of a configured URL, never its user or password."""
    parts = urlsplit(url)
    return f"{parts.hostname or 'local socket'}{f':{parts.port}' if parts.port else ''}{parts.path}"


@dataclass
class Stack:
    """The servers (from the common settings) and the services the stack starts; each service's
    own settings say where to find it (the gateway's address, the metrics ports, the bot's token)."""

    settings: ServiceSettings
    gateway: GatewaySettings
    worker: WorkerSettings
    bot: BotSettings
    env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    servers: ExitStack = field(default_factory=ExitStack)

    @classmethod
    def from_environment(cls) -> Stack:
        return cls(ServiceSettings(), GatewaySettings(), WorkerSettings(), BotSettings())

    def _server_ready(self, which: str, url: str, embedded: bool) -> None:
        """Says where a server is, never a configured URL's user or password."""
        data = self.settings.data_dir / which
        if which == "redis":
            # Embedded Redis is persistent (append-only file): queued jobs survive a restart of the stack.
            say(
                "redis",
                "ready",
                f"{url} (embedded, REDIS_URL unset; data in {data})" if embedded else f"{where(url)} (REDIS_URL)",
            )
        else:
            origin = f"embedded, DATABASE_URL unset; data in {data}" if embedded else f"{where(url)}, DATABASE_URL"
            say("postgres", "ready", f"schema up to date ({origin})")

    def start_servers(self) -> None:
        servers = self.servers.enter_context(
            backing_servers(self.settings, migrate_configured=True, on_ready=self._server_ready)
        )
        assert servers.redis_url and servers.database_url
        self.env = {"REDIS_URL": servers.redis_url, "DATABASE_URL": servers.database_url}

    def spawn(self, name: str, module: str, extra_env: dict[str, str] | None = None) -> None:
        env = {**os.environ, "LOG_FORMAT": os.environ.get("LOG_FORMAT", "console"), **self.env, **(extra_env or {})}
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # A local run as root (a container, a VM): Celery's "running as superuser" warning is
            # meant for deployments, which run as an unprivileged user (Dockerfile), so not here.
            # (By its text: the category's module cannot be imported when Python reads PYTHONWARNINGS.)
            env["PYTHONWARNINGS"] = ",".join(
                filter(None, [env.get("PYTHONWARNINGS"), "ignore:You're running the worker with superuser"])
            )
        self.processes[name] = subprocess.Popen([sys.executable, "-m", module], env=env)
        log.debug("started", extra={"service": name, "pid": self.processes[name].pid})

    # --- readiness ------------------------------------------------------------------------------
    def _base(self) -> str:
        return f"http://{self.gateway.gateway_host}:{self.gateway.gateway_port}"

    def _gateway_ready(self) -> str | None:
        if httpx.get(self._base() + "/healthz", timeout=3).status_code == 200:
            return self._base()
        return None

    def _worker_ready(self) -> str | None:
        """Ready once the gateway sees a worker online and, when the worker serves metrics, its
        model is loaded (a prefork worker answers before its child has loaded the model)."""
        response = httpx.get(self._base() + "/readyz", timeout=5)
        if response.status_code != 200:
            return None
        workers = ", ".join(response.json().get("workers", []))
        if not self.worker.worker_metrics_port:
            return workers
        model = self._served_model()
        return f"{workers} ({model})" if model else None

    def _served_model(self) -> str:
        """`model <version>, <backend>` from the worker's own metrics once its model is loaded."""
        from prometheus_client.parser import text_string_to_metric_families

        text = httpx.get(f"http://127.0.0.1:{self.worker.worker_metrics_port}/metrics", timeout=3).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "dvach_worker_model_info" and sample.value == 1:
                    return f"model {sample.labels.get('model_version')}, {sample.labels.get('backend')}"
        return ""

    def _bot_ready(self) -> str | None:
        port = self.bot.bot_metrics_port
        if not port:
            return "its log says when it polls"
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=3).raise_for_status()  # served once it knows its token
        return f"metrics on :{port}"

    def wait_ready(self, timeout_s: float) -> bool:
        """Until every service is ready; says each one as it becomes ready."""
        checks: dict[str, Callable[[], str | None]] = {"gateway": self._gateway_ready, "worker": self._worker_ready}
        if "bot" in self.processes:
            checks["bot"] = self._bot_ready
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            for name, check in list(checks.items()):
                try:
                    detail = check()
                except (httpx.HTTPError, ValueError):
                    detail = None
                if detail is not None:
                    say(name, "ready", detail)
                    del checks[name]
            if not checks:
                return True
            time.sleep(0.5)  # polling readiness of processes we started; bounded by the deadline
        return False

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with code {process.returncode}")

    def stop(self, interrupted: bool = False) -> None:
        """Stop the services, then the servers. `interrupted`: Ctrl-C reached the whole process
        group, so the services are stopping already; a second signal would only make Celery
        print its shutdown twice. They get SIGTERM if they are still running after a while."""
        if interrupted:
            for process in self.processes.values():
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    break
        for process in reversed(list(self.processes.values())):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)  # Celery: warm shutdown, finishes its job
        for name, process in self.processes.items():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                log.warning("did not stop in time, killing", extra={"service": name})
                process.kill()
        self.servers.close()


def banner(settings: GatewaySettings) -> str:
    base = f"http://{settings.gateway_host}:{settings.gateway_port}"
    return (
        f"\nReady. The gateway listens on {base}\n"
        f"  curl -s {base}/v1/replies -H 'content-type: application/json' "
        '-d \'{"dialog": ["привет, анон"]}\'\n'
        "  make chat          # talk to the model in this terminal\n"
        f"  {base}/docs        # the API\n"
        "Ctrl-C stops everything.\n"
    )


class Terminated(Exception):
    """SIGTERM or SIGHUP reached the launcher alone (`kill`, a process manager, a closed terminal)."""


def _terminated(signum: int, _frame) -> None:
    for stop_signal in STOP_SIGNALS:  # once: the stop that follows is not interrupted by a repeat
        signal.signal(stop_signal, signal.SIG_IGN)
    raise Terminated(signal.Signals(signum).name)


# Python's default for these ends the launcher at once, leaving every service and server running.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def run_stack(stack: Stack) -> None:
    interrupted = False
    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, _terminated)
    # A launcher started in the background by a script inherits SIGINT ignored (and Python then
    # keeps it so), while its services install their own handlers: Ctrl-C to the group would stop
    # them and leave the launcher to report a service that exited.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # Ctrl-C reaches the whole process group; the children stop themselves, we stop the servers.
    # SIGTERM reaches the launcher alone: it stops the children (stack.stop).
    try:
        print(
            "Starting the stack (the first run builds the demo model when the model hub is out of reach).", flush=True
        )
        stack.start_servers()
        stack.spawn("inference_worker", "services.inference_worker")
        stack.spawn("gateway", "services.gateway")
        if stack.bot.telegram_bot_token:
            stack.spawn("bot", "services.bot")
        else:
            say("bot", "off", "TELEGRAM_BOT_TOKEN not set")
        if not stack.wait_ready(timeout_s=600):
            raise RuntimeError("the stack did not become ready in 10 minutes")
        print(banner(stack.gateway), flush=True)
        while True:
            stack.check_alive()
            time.sleep(1)  # supervising children: wake up once a second to see if one died
    except KeyboardInterrupt:
        interrupted = True
        print("\nstopping...", flush=True)
    except Terminated as signal_name:
        print(f"\n{signal_name}: stopping...", flush=True)
    finally:
        stack.stop(interrupted)
        print("stopped.", flush=True)
