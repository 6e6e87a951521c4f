"""Published versions as folders on disk: names, the files a version must have, `version.json`.

Layout of the store (`MODEL_STORE_DIR`, default `DATA_DIR/models`; a volume in Kubernetes):

    <store>/<name>/            one published version, never overwritten
        config.json, model.safetensors, tokenizer files, generation_config.json
        version.json           name, base_model, data snapshot + sha256, params, metrics, created_at
        data.jsonl             the dialogs it was trained on (shared/dialog_jsonl.py)
        report.md, report.json, loss.png
    <store>/.incoming-*        a version being written; renamed into place when complete

Nothing here imports torch: a caller that must load a model to check it does that itself.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.model_store.errors import InvalidVersion, VersionError, VersionExists, VersionNotFound
from shared.settings import ModelStoreSettings

VERSION_FILE = "version.json"
# Names become folder names and Redis values: keep them boring.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# A folder that holds a loadable checkpoint has these.
_WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")
_TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer.model", "spiece.model")


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
    def from_settings(cls, settings: ModelStoreSettings) -> ModelStore:
        return cls(settings.store_path)

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

    def write(self, meta: VersionMeta, model_dir: Path, extra_files: Sequence[Path] = ()) -> Path:
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
            for extra in map(Path, extra_files):
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


def resolve_path(settings: ModelStoreSettings, name: str, registered_path: str | None) -> Path:
    """Where this process finds a version: its own store first (mount points differ between a
    training job and a worker pod), else the path recorded at publishing."""
    local = settings.store_path / name
    if local.is_dir() or not registered_path:
        return local
    return Path(registered_path)
