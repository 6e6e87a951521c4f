"""`python -m services.inference_worker.prepare [--version NAME]`: the model a worker serves,
downloaded and converted before the worker starts.

Converting a checkpoint to int8 takes about three times the memory of serving it (docs/deploy.md,
"Resources"). Run here, as the worker pod's init container (compose: the `prepare-model`
one-shot) with a limit of its own, it leaves the worker's container only the converted model to
load, so the worker is limited at what it serves with.

Without --version: what a starting worker loads, the active version (Redis, else the database)
or MODEL_NAME_OR_PATH (the hub download, or the demo model when the hub cannot be reached).
With --version: a published version, before it is activated, so that no running worker has to
convert it. The engines are the worker's: INFERENCE_BACKEND=auto converts for the first fast
engine that converts (onnxruntime, then ctranslate2), as the worker loads them; transformers needs
no conversion. Prints what it prepared as JSON; exits 2 when nothing servable could be prepared.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from shared.settings import WorkerSettings as Settings
from shared.settings import get_settings

log = logging.getLogger(__name__)

FAST_ENGINES = ("onnxruntime", "ctranslate2")  # backends.AUTO_ORDER without transformers


class NothingToServe(RuntimeError):
    """No model could be found or converted; the message says what to do."""


def model_to_serve(settings: Settings, version: str | None) -> tuple[Path, str]:
    """(folder, version name) of what a worker would load, or of the published `version`."""
    from services.inference_worker.model_source import ModelNotFound, resolve_model
    from services.inference_worker.model_versions import VersionWatcher
    from shared.model_store import VersionError, check_name, get_version, resolve_path

    if version is not None:
        registered = None
        try:
            check_name(version)
            if settings.database_url:
                from shared.db import make_engine

                engine = make_engine(settings.database_url)
                try:
                    registered = get_version(engine, version).path
                finally:
                    engine.dispose()
        except VersionError as exc:
            raise NothingToServe(str(exc)) from exc
        return resolve_path(settings, version, registered), version
    active = VersionWatcher().desired(settings)
    if active is not None:
        return resolve_path(settings, active.name, active.path), active.name
    try:
        source = resolve_model(settings)
    except ModelNotFound as exc:
        raise NothingToServe(str(exc)) from exc
    return source.path, source.version


def engines_for(backend: str) -> tuple[str, ...]:
    if backend == "auto":
        return FAST_ENGINES
    return (backend,) if backend in FAST_ENGINES else ()


def prepare(settings: Settings, version: str | None = None) -> dict:
    """Download and convert what a worker with `settings` serves; what was prepared, as a dict."""
    from services.inference_worker.conversion import ConversionError, ensure_converted
    from services.inference_worker.runtime import backend_options

    path, name = model_to_serve(settings, version)
    engines = engines_for(settings.inference_backend)
    prepared = {"version": name, "path": str(path), "backend": settings.inference_backend, "converted": None}
    prepared |= prepare_classifier(settings)
    if not engines:
        return prepared
    cache_dir = backend_options(settings).cache_dir
    refusals = []
    for engine in engines:
        try:
            out = ensure_converted(
                path, settings.inference_quantization, cache_dir, engine=engine, kv_cache=settings.inference_kv_cache
            )
        except ConversionError as exc:
            refusals.append(f"{engine}: {exc}")
            log.warning("conversion refused, trying the next engine", extra={"engine": engine, "error": str(exc)[:500]})
            continue
        return {**prepared, "engine": engine, "converted": str(out)}
    raise NothingToServe(
        f"no fast engine converts {path} ({'; '.join(refusals)}). The worker would load it with transformers "
        "in float32, which needs about twice its memory limit: set INFERENCE_BACKEND=transformers and raise it"
    )


def prepare_classifier(settings: Settings) -> dict:
    """The reranker's classifier exported for ONNX Runtime when a worker with `settings` loads one
    (candidates on); a classifier that does not convert is only logged: the worker then ranks
    without toxicity, as it would."""
    from services.inference_worker.runtime import conversion_cache, max_candidates
    from shared.toxicity import converted_classifier

    name = settings.reranker_toxicity_model
    if max_candidates(settings) < 2 or not name or settings.reranker_toxicity_engine != "onnxruntime":
        return {}
    try:
        out = converted_classifier(name, conversion_cache(settings), settings.reranker_toxicity_quantization)
    except (RuntimeError, OSError) as exc:
        log.warning("toxicity classifier not converted", extra={"model": name, "error": str(exc)[:500]})
        return {"classifier": None}
    return {"classifier": str(out)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Download and convert the model a worker serves, before it starts.")
    parser.add_argument("--version", help="a published version to prepare before activating it")
    args = parser.parse_args(argv)
    from shared.logging_setup import configure_from_settings

    settings = get_settings(Settings)
    configure_from_settings(settings)
    try:
        prepared = prepare(settings, args.version)
    except NothingToServe as exc:
        log.error("nothing to serve", extra={"error": str(exc)})
        print(f"NothingToServe: {exc}", file=sys.stderr)
        sys.exit(2)
    log.info("model prepared", extra=prepared)
    print(json.dumps(prepared))


if __name__ == "__main__":
    main()
