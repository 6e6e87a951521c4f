"""Serving the active model version: noticed before each job, loaded between jobs, swapped when sound.

The trainer's `activate` (later the admin API) writes the Redis key `dvach:model:active`
(shared/model_store.py). Before each job a worker process reads it with one GET; when it names a
version other than the one served, the process loads that version beside the old one (the same
`ModelRuntime.load` as at start: backend, warm-up generation of two tokens), then swaps. The job
that noticed runs on the new model; no job in flight is touched, because a prefork child runs one
job at a time and the swap happens before the job's own generation.

A version that fails to load is refused: the error is logged and recorded in Redis
(`python -m services.trainer list` shows it), the old model keeps serving, and the same activation
(name + generation) is not tried again on every job. Activating it again (a new generation)
makes each worker try once more.

A worker that starts while the active version does not load serves the version active before it
(or MODEL_NAME_OR_PATH). Where no version was ever activated it serves MODEL_NAME_OR_PATH as
before. When the Redis key is missing (never set, or Redis lost it) a worker that has
DATABASE_URL looks at the table at most every MODEL_VERSION_DB_CHECK_S and puts the active
version back into Redis; a worker without DATABASE_URL never touches the database.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import threading
import time
from contextlib import suppress
from typing import TYPE_CHECKING

from typing_extensions import TypeIs

from shared.model_store import (
    ActiveVersion,
    check_files,
    read_active,
    record_load_failure,
    resolve_path,
    restore_active_key,
)
from shared.settings import WorkerSettings

if TYPE_CHECKING:
    import redis
    from sqlalchemy import Engine

log = logging.getLogger(__name__)


class VersionWatcher:
    """Per worker process: what is served, what is wanted, which activations were refused."""

    def __init__(self) -> None:
        self.serving: ActiveVersion | None = None  # None: MODEL_NAME_OR_PATH (no version loaded)
        self.refused: dict[tuple[str, int], str] = {}  # (name, generation) -> error
        self._pid: int | None = None
        self._redis: redis.Redis | None = None
        self._engine: Engine | None = None
        self._last_db_check = float("-inf")
        self._last_redis_warning = float("-inf")
        self._switching = threading.Lock()
        self._local = threading.local()

    # --- what is wanted -------------------------------------------------------------------

    def _clients(self, settings: WorkerSettings):
        # Connections are made in the process that uses them: never inherited across fork.
        if self._pid != os.getpid():
            self._pid, self._redis, self._engine = os.getpid(), None, None
        if self._redis is None and settings.redis_url:
            import redis

            self._redis = redis.Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
        return self._redis

    def _db_engine(self, settings: WorkerSettings):
        if self._engine is None:
            from sqlalchemy.pool import NullPool

            from shared.db import make_engine

            self._engine = make_engine(settings.required_database_url, poolclass=NullPool)  # no idle connections
        return self._engine

    def desired(self, settings: WorkerSettings) -> ActiveVersion | None:
        """The active version (Redis first, the database when Redis has none); None: nothing active."""
        client = self._clients(settings)
        if client is None:
            return None
        try:
            active = read_active(client)
            if active is None and settings.database_url:
                now = time.monotonic()
                if now - self._last_db_check >= settings.model_version_db_check_s:
                    self._last_db_check = now
                    active = restore_active_key(client, self._db_engine(settings))
            return active
        except Exception as exc:  # noqa: BLE001 - Redis or the DB down (any client error): keep serving what is loaded
            now = time.monotonic()
            if now - self._last_redis_warning > 60:
                self._last_redis_warning = now
                log.warning(
                    "cannot read the active model version; serving the loaded one", extra={"error": str(exc)[:300]}
                )
            return None

    # --- loading --------------------------------------------------------------------------

    def _needs(self, desired: ActiveVersion | None) -> TypeIs[ActiveVersion]:
        if desired is None:
            return False
        if self.serving is not None and self.serving.name == desired.name:
            return False
        return (desired.name, desired.generation) not in self.refused

    def _load_into(self, runtime, settings: WorkerSettings, desired: ActiveVersion) -> bool:
        """Load `desired` in a fresh runtime and move it into `runtime`; False (old kept) on failure."""
        old = runtime.version if getattr(runtime, "loaded", False) else None
        started = time.perf_counter()
        path = resolve_path(settings, desired.name, desired.path)
        self._local.inside = True  # the fresh runtime's own load() must not look for versions again
        try:
            check_files(path)
            fresh = type(runtime)()
            fresh.load(settings.model_copy(update={"model_name_or_path": str(path)}))
            if fresh.source.version != desired.name:
                fresh.source = dataclasses.replace(fresh.source, version=desired.name)
        except Exception as exc:  # noqa: BLE001 - whatever a broken checkpoint raises: the old model stays
            error = f"{type(exc).__name__}: {str(exc)[:400]}"
            self.refused[(desired.name, desired.generation)] = error
            log.error(
                "model version failed to load; keeping the old model",
                extra={
                    "version": desired.name,
                    "generation": desired.generation,
                    "path": str(path),
                    "serving": old,
                    "error": error,
                },
            )
            with suppress(Exception):  # advisory only
                record_load_failure(self._clients(settings), desired.name, desired.generation, error)
            return False
        finally:
            self._local.inside = False
        vars(runtime).update(vars(fresh))  # one assignment per attribute; the old model is dropped after
        self.serving = desired
        del fresh
        gc.collect()
        log.info(
            "model version switched",
            extra={
                "from": old,
                "to": desired.name,
                "generation": desired.generation,
                "switch_s": round(time.perf_counter() - started, 2),
            },
        )
        return True

    def load_at_start(self, runtime, settings: WorkerSettings) -> bool:
        """At process start: load the active version if there is one; False = load the default."""
        if getattr(self._local, "inside", False):
            return False
        desired = self.desired(settings)
        if not self._needs(desired):
            return False
        if self._load_into(runtime, settings, desired):
            return True
        # The active version does not load: a starting worker serves the one active before it,
        # like the workers that were already running it.
        previous = desired.previous
        if previous is not None and self._needs(previous):
            log.warning("serving the previously active version instead", extra={"version": previous.name})
            return self._load_into(runtime, settings, previous)
        return False

    def before_job(self, runtime, settings: WorkerSettings) -> None:
        """Called before each job: switch to a newly activated version (blocking this job only)."""
        desired = self.desired(settings)
        if not self._needs(desired):
            return
        if not self._switching.acquire(blocking=False):
            return  # another thread of this process is switching; this job uses the current model
        try:
            self._load_into(runtime, settings, desired)
        finally:
            self._switching.release()


watcher = VersionWatcher()


def load_active_version(runtime, settings: WorkerSettings) -> bool:
    """Hook for `ModelRuntime.load`: True when the active version was loaded into `runtime`."""
    return watcher.load_at_start(runtime, settings)


def switch_if_activated(runtime, settings: WorkerSettings) -> None:
    """Hook for the task: before a job, move to the active version if it changed."""
    watcher.before_job(runtime, settings)
