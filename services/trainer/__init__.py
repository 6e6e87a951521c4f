"""Offline fine-tuning job: dialogs (database or exported JSONL) -> fine-tuned GPT-2 -> model version.

`python -m services.trainer train|publish|activate|list|export` (see docs/training.md). Runs as a
CLI or as a Kubernetes Job; imports `shared/` only, never another service.
"""
