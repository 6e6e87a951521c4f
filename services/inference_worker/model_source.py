"""Where the worker's model comes from: a local folder, the model hub, or the bundled demo model."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from shared.settings import Settings

log = logging.getLogger(__name__)

# Files a GPT-2 checkpoint needs; skips other weight formats (pytorch_model.bin, tf, flax) on the hub.
_HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "merges.txt", "vocab.*"]


@dataclass(frozen=True)
class ModelSource:
    path: Path
    version: str  # reported with every result
    fallback: bool = False


def _version_of(folder: Path, default: str) -> str:
    """A published version carries its name in version.json; other folders use their name."""
    meta = folder / "version.json"
    if meta.exists():
        try:
            return json.loads(meta.read_text())["name"]
        except (ValueError, KeyError):
            pass
    return default


def resolve_model(settings: Settings) -> ModelSource:
    """Find the model named by MODEL_NAME_OR_PATH; fall back to the demo model if the hub is unreachable."""
    name = settings.model_name_or_path
    local = Path(name).expanduser()
    if local.is_dir():
        return ModelSource(local, _version_of(local, local.name))
    try:
        from huggingface_hub import snapshot_download

        return ModelSource(Path(snapshot_download(name, allow_patterns=_HUB_PATTERNS)), name)
    except Exception as exc:  # offline, unknown repo, auth: all mean "not from the hub"
        from services.inference_worker.demo_model.build import ensure_demo_model

        demo = ensure_demo_model(settings.demo_model_dir)
        log.warning(
            "model hub unreachable: serving the bundled demo model instead",
            extra={"wanted": name, "serving": str(demo), "reason": f"{type(exc).__name__}: {str(exc)[:160]}"},
        )
        return ModelSource(demo, "demo", fallback=True)
