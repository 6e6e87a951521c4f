"""The schema's version across processes: one migration at a time, and services that wait for it.

- `migration_lock`: every `alembic upgrade` (migrations/env.py: the Kubernetes Job, compose's
  `migrate`, `shared.db.migrate`, an operator by hand) holds a PostgreSQL advisory lock while it
  runs, so concurrent runs take turns and the later ones find the schema current and do nothing.
- `wait_until_current`: the Kubernetes pods' init step (`python -m shared.db.schema wait`) waits
  until the database is at the code's Alembic heads, so new code never runs on the old schema
  while the migration Job is still at work.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Connection, text

from shared.db.engine import MIGRATIONS_DIR, make_engine

log = logging.getLogger(__name__)

# A fixed 64-bit key of pg_advisory_lock for the migrations (other keys: model_store, scraper store).
MIGRATION_LOCK_KEY = 0x64766163684D4947
WAIT_LOG_EVERY_S = 30.0


@contextmanager
def migration_lock(connection: Connection) -> Iterator[None]:
    """Hold the migrations' session advisory lock on `connection` for the block (waiting for it
    if another migration holds it). It is released at the end, or with the session if the
    process dies."""
    if not connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY}).scalar():
        log.info("another migration is running; waiting for it")
        connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
    connection.commit()  # the lock is the session's: it outlives this transaction
    try:
        yield
    finally:
        connection.rollback()  # a failed migration leaves its transaction aborted
        connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
        connection.commit()


@dataclass(frozen=True)
class SchemaState:
    """The database's Alembic revisions against the code's."""

    current: frozenset[str]
    heads: frozenset[str]
    known: frozenset[str]

    @property
    def ready(self) -> bool:
        """At the code's heads, or ahead of them (a revision this code does not know: a newer
        release migrated, and this one is being rolled back to)."""
        return self.heads <= self.current or bool(self.current - self.known)


def schema_state(url: str) -> SchemaState:
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    script = ScriptDirectory.from_config(config)
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_heads()
    finally:
        engine.dispose()
    return SchemaState(
        current=frozenset(current),
        heads=frozenset(script.get_heads()),
        known=frozenset(rev.revision for rev in script.walk_revisions()),
    )


def wait_until_current(url: str, timeout_s: float, interval_s: float = 2.0) -> SchemaState:
    """Return once the schema is ready for this code; TimeoutError after `timeout_s`. A database
    that cannot be reached yet is waited for too (it may be starting)."""
    started = time.monotonic()
    last_log = float("-inf")
    while True:
        try:
            state = schema_state(url)
        except Exception as exc:  # noqa: BLE001 - the database not up yet: wait, say why
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        else:
            if state.ready:
                return state
            reason = f"at {sorted(state.current) or 'no revision'}, the code needs {sorted(state.heads)}"
        waited = time.monotonic() - started
        if waited > timeout_s:
            raise TimeoutError(f"the schema is not ready after {timeout_s:.0f} s: {reason}")
        if waited - last_log >= WAIT_LOG_EVERY_S:
            last_log = waited
            log.info("waiting for the migration", extra={"reason": reason, "waited_s": round(waited)})
        time.sleep(interval_s)  # the poll period of an init step, not a synchronisation


def main(argv: list[str] | None = None) -> None:
    """`python -m shared.db.schema wait [--timeout S]`: exit 0 once DATABASE_URL's schema is ready."""
    parser = argparse.ArgumentParser(description="Wait until the database schema is at this code's revision.")
    parser.add_argument("command", choices=["wait"])
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds before giving up (exit 1)")
    args = parser.parse_args(argv)
    from shared.logging_setup import configure_from_settings
    from shared.settings import ServiceSettings, get_settings

    settings = get_settings(ServiceSettings)
    configure_from_settings(settings)
    if not settings.database_url:
        sys.exit("shared.db.schema: DATABASE_URL is not set")
    try:
        state = wait_until_current(settings.database_url, args.timeout)
    except TimeoutError as exc:
        sys.exit(f"shared.db.schema: {exc}; is the migration Job (dvach-migrate) running? (docs/deploy.md)")
    log.info("schema ready", extra={"revisions": sorted(state.current)})


if __name__ == "__main__":
    main()
