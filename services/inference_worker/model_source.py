"""Where the worker's model comes from: a local folder, the model hub, or the bundled demo model.

A hub name is downloaded with huggingface_hub (`HF_ENDPOINT` points it at another hub): the
config, the tokenizer files and the weights in one format, the one the repository has
(safetensors when present, else `pytorch_model.bin`, which transformers loads with
`torch.load(weights_only=True)`), never both. The published 2ch model has only
`pytorch_model.bin` on its main branch. Progress is logged while the weights download.

The demo model is served only when the hub cannot be reached and nothing is cached; a hub that
answers that the repository does not exist (or has no weights) is an error, not a fallback.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from shared.progress import LoggedProgress
from shared.settings import WorkerSettings

log = logging.getLogger(__name__)

# Files of a checkpoint besides its weights: config, generation defaults, every tokenizer format.
_CHECKPOINT_FILES = {
    "config.json",
    "generation_config.json",
    "version.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
}
_TOKENIZER_SUFFIXES = (".model", ".tiktoken")  # sentencepiece / tiktoken vocabularies
# Weight formats, preferred first: a (sharded) file and its index.
_WEIGHT_FORMATS = (
    ("model.safetensors", "model-", ".safetensors", "model.safetensors.index.json"),
    ("pytorch_model.bin", "pytorch_model-", ".bin", "pytorch_model.bin.index.json"),
)


class ModelNotFound(RuntimeError):
    """MODEL_NAME_OR_PATH names nothing servable: no such folder, no such repository, no weights."""


@dataclass(frozen=True)
class ModelSource:
    path: Path
    version: str  # reported with every result
    fallback: bool = False
    generation_defaults: dict = field(default_factory=dict)  # the version's sampling defaults (version.json)


def read_version_file(folder: Path) -> dict:
    """`version.json` of a published version (name, generation defaults, ...), {} when absent or broken."""
    try:
        raw = json.loads((Path(folder) / "version.json").read_text())
        return raw if isinstance(raw, dict) else {}
    except (OSError, ValueError):
        return {}


def local_source(folder: Path, version: str | None = None, fallback: bool = False) -> ModelSource:
    meta = read_version_file(folder)
    defaults = meta.get("generation_defaults")
    defaults = defaults if isinstance(defaults, dict) else {}
    return ModelSource(Path(folder), version or str(meta.get("name") or Path(folder).name), fallback, defaults)


def files_to_fetch(repo_files: list[str]) -> list[str]:
    """The files of a hub repository the worker needs: checkpoint files and one weight format.

    Raises ModelNotFound when the repository holds weights in no format transformers loads.
    """
    top = [f for f in repo_files if "/" not in f]  # subfolders hold other exports (onnx/, ...)
    wanted = [f for f in top if f in _CHECKPOINT_FILES or f.endswith(_TOKENIZER_SUFFIXES)]
    for single, shard_prefix, suffix, index in _WEIGHT_FORMATS:
        weights = [f for f in top if f in (single, index) or (f.startswith(shard_prefix) and f.endswith(suffix))]
        if any(f != index for f in weights):
            return wanted + weights
    raise ModelNotFound(
        f"the repository has no weights transformers can load (looked for "
        f"{', '.join(w[0] for w in _WEIGHT_FORMATS)} and their shards); it holds: {', '.join(sorted(top)) or 'nothing'}"
    )


class _DownloadProgress(LoggedProgress):
    """huggingface_hub drives several bars (files, bytes received, bytes written): log the bytes."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self._to_log and not str(self.desc).startswith(("Downloading", "Reconstruct")):
            self._to_log = False

    def _log(self, state: str) -> None:
        self.desc = "model download"
        super()._log(state)


def download(name: str) -> Path:
    """The hub repository `name` in the local cache, downloading what is missing (see the module doc).

    Raises ModelNotFound when the hub answers that it has no such model, and ConnectionError when the
    hub cannot be reached and nothing usable is cached.
    """
    import httpx2  # huggingface_hub's HTTP client
    from huggingface_hub import HfApi, snapshot_download, try_to_load_from_cache
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        try:
            info = HfApi().model_info(name)
        except (RepositoryNotFoundError, GatedRepoError, RevisionNotFoundError) as exc:
            raise ModelNotFound(
                f"the model hub has no (accessible) model {name!r}: {str(exc).splitlines()[0]}"
            ) from exc
        except HFValidationError as exc:
            raise ModelNotFound(f"MODEL_NAME_OR_PATH={name!r} is neither a folder nor a hub name ({exc})") from exc
        except HfHubHTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            if status < 500 and status != 429:  # the hub answered, and said no
                raise ModelNotFound(f"the model hub refused {name!r}: {str(exc).splitlines()[0]}") from exc
            raise ConnectionError(_reason(exc)) from exc
        except (OfflineModeIsEnabled, httpx2.TransportError) as exc:  # no connection, a timeout
            raise ConnectionError(_reason(exc)) from exc
    except ConnectionError as exc:
        cached = _cached_snapshot(name, try_to_load_from_cache)
        if cached is not None:
            log.warning(
                "model hub unreachable: serving the cached copy",
                extra={"model": name, "path": str(cached), "reason": _reason(exc)},
            )
            return cached
        raise
    patterns = files_to_fetch([s.rfilename for s in info.siblings or []])
    log.info(
        "downloading the model (cached files are reused)",
        extra={"model": name, "revision": info.sha, "files": ", ".join(patterns)},
    )
    try:
        # By branch (not info.sha) so that the cache records where main points, for offline starts.
        path = snapshot_download(name, allow_patterns=patterns, tqdm_class=_DownloadProgress)
    except LocalEntryNotFoundError as exc:  # the connection dropped between the listing and the files
        raise ConnectionError(_reason(exc)) from exc
    return Path(path)


def _cached_snapshot(name: str, try_to_load_from_cache) -> Path | None:
    """The cached snapshot of `name` (the revision main pointed to when it was downloaded), if complete."""
    config = try_to_load_from_cache(name, "config.json")
    if not isinstance(config, str):
        return None
    folder = Path(config).parent
    try:
        files_to_fetch([p.name for p in folder.iterdir()])
    except ModelNotFound:
        return None
    return folder


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"


def resolve_model(settings: WorkerSettings) -> ModelSource:
    """The model named by MODEL_NAME_OR_PATH (a folder or a hub name); the demo model when the hub
    cannot be reached. Raises ModelNotFound for a name that names nothing servable."""
    name = settings.model_name_or_path
    local = Path(name).expanduser()
    if local.is_dir():
        return local_source(local)
    if name.startswith((".", "/", "~")) or len(PurePosixPath(name).parts) > 2:
        raise ModelNotFound(f"MODEL_NAME_OR_PATH={name!r} looks like a path, and there is no such folder")
    try:
        return local_source(download(name), version=name)
    except ConnectionError as exc:
        from services.inference_worker.demo_model.build import ensure_demo_model

        demo = ensure_demo_model(settings.demo_model_dir)
        log.warning(
            "model hub unreachable: serving the bundled demo model instead",
            extra={"wanted": name, "serving": str(demo), "reason": str(exc)[:200]},
        )
        return local_source(demo, version="demo", fallback=True)


def main() -> None:
    """`python -m services.inference_worker.model_source`: fetch MODEL_NAME_OR_PATH ahead of time
    (e.g. in an init step, so that workers start from the cache) and print where it is."""
    import sys

    from shared.logging_setup import configure_from_settings
    from shared.settings import get_settings

    settings = get_settings(WorkerSettings)
    configure_from_settings(settings)
    try:
        source = resolve_model(settings)
    except ModelNotFound as exc:
        print(f"ModelNotFound: {exc}", file=sys.stderr)
        sys.exit(2)
    print(
        json.dumps(
            {
                "path": str(source.path),
                "version": source.version,
                "fallback": source.fallback,
                "generation_defaults": source.generation_defaults,
            }
        )
    )


if __name__ == "__main__":
    main()
