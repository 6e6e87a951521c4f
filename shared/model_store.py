"""The model store (folders of published versions) and the model versions registry.

Shared by the trainer (publish, activate), the inference workers (which version to serve) and,
later, the gateway's admin API. Nothing here imports torch: callers that must load a model to
check it (the trainer's `activate`) do that themselves.

Layout of the store (`MODEL_STORE_DIR`, default `DATA_DIR/models`; a volume in Kubernetes):

    <store>/<name>/            one published version, never overwritten
        config.json, model.safetensors, tokenizer files, generation_config.json
        version.json           name, base_model, data snapshot + sha256, params, metrics, created_at
        data.jsonl             the dialogs it was trained on (scraper's export format)
        report.md, report.json, loss.png
    <store>/.incoming-*        a version being written; renamed into place when complete

Which version is active lives in two places that `activate_version` writes together:
the `model_versions` table (the record; a partial unique index allows one active row) and the
Redis key `dvach:model:active` (a JSON value with the name, the path and a generation counter),
which every worker reads before each job with one GET.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.db.models import ModelVersion
from shared.settings import Settings

log = logging.getLogger(__name__)

ACTIVE_KEY = "dvach:model:active"  # JSON of ActiveVersion; read by workers before each job
GENERATION_KEY = "dvach:model:generation"  # INCR'd on every activation
LOAD_FAILURES_KEY = "dvach:model:load_failures"  # hash: name -> JSON of the last worker-side failure
VERSION_FILE = "version.json"
# Names become folder names and Redis values: keep them boring.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# A folder that holds a loadable checkpoint has these.
_WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")
_TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer.model", "spiece.model")
_ACTIVATION_LOCK = 0x6476616368  # pg advisory lock id: activations run one at a time


class VersionError(Exception):
    """Base of the store's errors; the message is meant for an operator."""


class VersionExists(VersionError):
    """A version of that name is already published (in the store or in the registry)."""


class VersionNotFound(VersionError):
    pass


class InvalidVersion(VersionError):
    """The folder is not a loadable checkpoint (missing or corrupt files)."""


def store_dir(settings: Settings) -> Path:
    """The model store folder: MODEL_STORE_DIR, or DATA_DIR/models."""
    return Path(settings.model_store_dir or settings.data_dir / "models").expanduser()


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name or ""):
        raise VersionError(
            f"bad version name {name!r}: use letters, digits, '.', '_' or '-' (at most 128, not starting with a dot)"
        )
    return name


def check_files(folder: Path) -> None:
    """Raise InvalidVersion unless `folder` has a readable config, weights and a tokenizer.

    Cheap (no torch): it catches a missing, truncated-to-nothing or unparsable checkpoint; a
    checkpoint that parses but does not load is caught by loading it (trainer's `activate`, workers).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidVersion(f"{folder} is not a folder")
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise InvalidVersion(f"{folder}/config.json is missing or not JSON: {exc}") from exc
    if not isinstance(config, dict) or "model_type" not in config:
        raise InvalidVersion(f"{folder}/config.json has no model_type")
    weights = [p for pattern in _WEIGHT_PATTERNS for p in folder.glob(pattern)]
    if not weights or any(p.stat().st_size == 0 for p in weights):
        raise InvalidVersion(f"{folder} has no (or empty) weight files")
    if not any((folder / name).exists() for name in _TOKENIZER_FILES):
        raise InvalidVersion(f"{folder} has no tokenizer files")


@dataclass
class VersionMeta:
    """What `version.json` holds; `data`/`params`/`metrics` are free-form JSON."""

    name: str
    base_model: str | None = None
    data: dict[str, Any] = field(default_factory=dict)  # source, filters, counts, sha256
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    # Sampling defaults the version is served with (GenerationParams fields); a caller's own values win.
    generation_defaults: dict[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def data_hash(self) -> str | None:
        return self.data.get("sha256")

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, indent=2, sort_keys=False)

    @classmethod
    def read(cls, folder: Path) -> VersionMeta:
        raw = json.loads((Path(folder) / VERSION_FILE).read_text())
        known = {
            k: raw[k]
            for k in ("name", "base_model", "data", "params", "metrics", "generation_defaults", "created_at")
            if k in raw
        }
        return cls(**known)


class ModelStore:
    """Published versions as folders under `root`; a name is written once, atomically."""

    def __init__(self, root: Path):
        self.root = Path(root)

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelStore:
        return cls(store_dir(settings))

    def path_of(self, name: str) -> Path:
        return self.root / check_name(name)

    def exists(self, name: str) -> bool:
        return self.path_of(name).exists()

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def meta(self, name: str) -> VersionMeta:
        try:
            return VersionMeta.read(self.path_of(name))
        except FileNotFoundError as exc:
            raise VersionNotFound(f"no version {name!r} in {self.root}") from exc

    def write(self, meta: VersionMeta, model_dir: Path, extra_files: list[Path] = ()) -> Path:
        """Copy a checkpoint folder (+ extra files: report, plot, data) into `<root>/<name>/`.

        Written to a hidden temporary folder first and renamed into place, so a reader never sees
        half a version; an existing name is refused (VersionExists), never overwritten.
        """
        final = self.path_of(meta.name)
        if final.exists():
            raise VersionExists(f"version {meta.name!r} already exists at {final}; publishing never overwrites")
        check_files(model_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".incoming-{meta.name}-{uuid.uuid4().hex[:8]}"
        try:
            shutil.copytree(model_dir, tmp)
            for extra in extra_files:
                extra = Path(extra)
                if extra.exists():
                    shutil.copy2(extra, tmp / extra.name)
            (tmp / VERSION_FILE).write_text(meta.to_json())
            try:
                # rename(2) of a folder fails on a non-empty target: a racing publisher of the same
                # name loses here instead of overwriting.
                os.rename(tmp, final)
            except OSError as exc:
                raise VersionExists(f"version {meta.name!r} appeared while publishing: {exc}") from exc
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return final

    def remove(self, name: str) -> None:
        """Delete a version folder (used only to undo a publish whose registration failed)."""
        shutil.rmtree(self.path_of(name), ignore_errors=True)


# --- registry (the model_versions table) -------------------------------------------------------


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
    engine: Engine, store: ModelStore, meta: VersionMeta, model_dir: Path, extra_files: list[Path] = ()
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


def resolve_path(settings: Settings, name: str, registered_path: str | None) -> Path:
    """Where this process finds a version: its own store first (mount points differ between a
    training job and a worker pod), else the path recorded at publishing."""
    local = store_dir(settings) / name
    if local.is_dir() or not registered_path:
        return local
    return Path(registered_path)


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
        previous = (current.name, current.path) if current is not None and current.id != row.id else (None, None)
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


__all__ = [
    "ACTIVE_KEY",
    "ActiveVersion",
    "InvalidVersion",
    "ModelStore",
    "VersionError",
    "VersionExists",
    "VersionMeta",
    "VersionNotFound",
    "activate_version",
    "active_from_db",
    "announce_active",
    "check_files",
    "check_name",
    "get_version",
    "list_versions",
    "load_failures",
    "publish_version",
    "read_active",
    "record_load_failure",
    "resolve_path",
    "restore_active_key",
    "store_dir",
]
