"""Published model versions: the folders of the store (files.py) and the registry that says which
one is active (registry.py: the `model_versions` table and a Redis key).

Shared by the trainer (publish, activate), the inference workers (which version to serve) and
the gateway's admin API (list, activate).
"""

from shared.model_store.errors import InvalidVersion, VersionError, VersionExists, VersionNotFound
from shared.model_store.files import VERSION_FILE, ModelStore, VersionMeta, check_files, check_name, resolve_path
from shared.model_store.registry import (
    ACTIVE_KEY,
    GENERATION_KEY,
    LOAD_FAILURES_KEY,
    ActiveVersion,
    activate_version,
    active_from_db,
    announce_active,
    get_version,
    list_versions,
    load_failures,
    publish_version,
    read_active,
    record_load_failure,
    restore_active_key,
)

__all__ = [
    "ACTIVE_KEY",
    "GENERATION_KEY",
    "LOAD_FAILURES_KEY",
    "VERSION_FILE",
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
]
