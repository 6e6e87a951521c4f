"""The model versions registry: the `model_versions` table and the Redis key of the active one.

Which version is active lives in two places that `activate_version` writes together:
the `model_versions` table (the record; a partial unique index allows one active row) and the
Redis key `dvach:model:active` (a JSON value with the name, the path and a generation counter),
which every worker reads before each job with one GET.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.db.models import ModelVersion
from shared.model_store.errors import VersionExists, VersionNotFound
from shared.model_store.files import ModelStore, VersionMeta, check_name

log = logging.getLogger(__name__)

ACTIVE_KEY = "dvach:model:active"  # JSON of ActiveVersion; read by workers before each job
GENERATION_KEY = "dvach:model:generation"  # INCR'd on every activation
LOAD_FAILURES_KEY = "dvach:model:load_failures"  # hash: name -> JSON of the last worker-side failure
_ACTIVATION_LOCK = 0x6476616368  # pg advisory lock id: activations run one at a time


@dataclass(frozen=True)
class ActiveVersion:
    """The value of the Redis key that tells workers what to serve."""

    name: str
    path: str
    generation: int = 0
    # The version active before: what a starting worker serves if this one does not load.
    previous_name: str | None = None
    previous_path: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str | bytes) -> ActiveVersion:
        data = json.loads(raw)
        return cls(
            name=data["name"],
            path=data["path"],
            generation=int(data.get("generation", 0)),
            previous_name=data.get("previous_name"),
            previous_path=data.get("previous_path"),
        )

    @property
    def previous(self) -> ActiveVersion | None:
        if not self.previous_name or self.previous_name == self.name:
            return None
        return ActiveVersion(name=self.previous_name, path=self.previous_path or "", generation=self.generation)


def publish_version(
    engine: Engine, store: ModelStore, meta: VersionMeta, model_dir: Path, extra_files: Sequence[Path] = ()
) -> ModelVersion:
    """Write the version into the store and register it (inactive). Refuses an existing name."""
    check_name(meta.name)
    with Session(engine) as session:
        if session.scalar(select(ModelVersion.id).where(ModelVersion.name == meta.name)) is not None:
            raise VersionExists(f"version {meta.name!r} is already registered; publishing never overwrites")
    path = store.write(meta, model_dir, extra_files)
    row = ModelVersion(
        name=meta.name,
        path=str(path),
        base_model=meta.base_model,
        data_hash=meta.data_hash,
        metrics=meta.metrics,
        params={**meta.params, "data": meta.data},
        is_active=False,
    )
    try:
        with Session(engine, expire_on_commit=False) as session:
            session.add(row)
            session.commit()
    except IntegrityError as exc:
        store.remove(meta.name)  # ours, written a moment ago: undo instead of leaving an orphan
        raise VersionExists(f"version {meta.name!r} was registered concurrently") from exc
    except Exception:
        store.remove(meta.name)
        raise
    log.info("model version published", extra={"version": meta.name, "path": str(path)})
    return row


def list_versions(engine: Engine) -> list[ModelVersion]:
    with Session(engine, expire_on_commit=False) as session:
        return list(session.scalars(select(ModelVersion).order_by(ModelVersion.created_at, ModelVersion.id)))


def get_version(engine: Engine, name: str) -> ModelVersion:
    with Session(engine, expire_on_commit=False) as session:
        row = session.scalar(select(ModelVersion).where(ModelVersion.name == name))
    if row is None:
        raise VersionNotFound(f"no registered version {name!r}")
    return row


def active_from_db(engine: Engine) -> ModelVersion | None:
    with Session(engine, expire_on_commit=False) as session:
        return session.scalar(select(ModelVersion).where(ModelVersion.is_active.is_(True)))


def activate_version(engine: Engine, redis_client, name: str) -> ActiveVersion:
    """Make `name` the one active version: the table in one transaction, then the Redis key.

    The caller checks that the version loads before calling this (the trainer CLI does, unless told
    not to); workers check again themselves and keep the old model if it does not load.
    """
    with Session(engine) as session, session.begin():
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ACTIVATION_LOCK})
        row = session.scalar(select(ModelVersion).where(ModelVersion.name == name))
        if row is None:
            raise VersionNotFound(f"no registered version {name!r}")
        current = session.scalar(select(ModelVersion).where(ModelVersion.is_active.is_(True)))
        previous: tuple[str | None, str | None] = (
            (current.name, current.path) if current is not None and current.id != row.id else (None, None)
        )
        if previous == (None, None) and current is not None:  # re-activation: keep its fallback
            old = read_active(redis_client)
            if old is not None and old.name == name:
                previous = (old.previous_name, old.previous_path)
        session.execute(
            update(ModelVersion)
            .where(ModelVersion.is_active.is_(True), ModelVersion.id != row.id)
            .values(is_active=False)
        )
        session.flush()  # the old row leaves the partial unique index before the new one enters it
        row.is_active = True
        row.activated_at = datetime.now(UTC)
        path = row.path
    return announce_active(redis_client, name, path, previous)


def announce_active(
    redis_client, name: str, path: str, previous: tuple[str | None, str | None] = (None, None)
) -> ActiveVersion:
    """Write the Redis key workers poll; each call bumps the generation (a new activation)."""
    generation = int(redis_client.incr(GENERATION_KEY))
    active = ActiveVersion(
        name=name, path=path, generation=generation, previous_name=previous[0], previous_path=previous[1]
    )
    redis_client.set(ACTIVE_KEY, active.to_json())
    log.info("model version activated", extra={"version": name, "generation": generation})
    return active


def read_active(redis_client) -> ActiveVersion | None:
    raw = redis_client.get(ACTIVE_KEY)
    if raw is None:
        return None
    try:
        return ActiveVersion.from_json(raw)
    except (ValueError, KeyError, TypeError):
        log.error("unreadable value in %s: %r", ACTIVE_KEY, raw[:200])
        return None


def restore_active_key(redis_client, engine: Engine) -> ActiveVersion | None:
    """After a Redis flush: put the DB's active version back in Redis (if nobody did meanwhile)."""
    row = active_from_db(engine)
    if row is None:
        return None
    generation = int(redis_client.incr(GENERATION_KEY))
    active = ActiveVersion(name=row.name, path=row.path, generation=generation)
    if redis_client.set(ACTIVE_KEY, active.to_json(), nx=True):
        log.warning("active model version restored in Redis from the database", extra={"version": row.name})
        return active
    return read_active(redis_client)


def record_load_failure(redis_client, name: str, generation: int, error: str) -> None:
    """Tell operators (`python -m services.trainer list`) that a worker refused a version."""
    value = {
        "generation": generation,
        "worker": f"{socket.gethostname()}:{os.getpid()}",
        "error": error[:500],
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    redis_client.hset(LOAD_FAILURES_KEY, name, json.dumps(value, ensure_ascii=False))


def load_failures(redis_client) -> dict[str, dict]:
    return {
        (k.decode() if isinstance(k, bytes) else k): json.loads(v)
        for k, v in (redis_client.hgetall(LOAD_FAILURES_KEY) or {}).items()
    }
