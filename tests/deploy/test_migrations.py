"""One migration at a time (the Kubernetes Job, compose's `migrate`, an operator, all at once) and
services that wait for the schema their code needs (the pods' `wait-for-schema` init step)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from shared.db import make_engine
from shared.db.schema import MIGRATION_LOCK_KEY, SchemaState, schema_state
from tests.processes import REPO
from tests.servers import create_database, drop_database

ALEMBIC = str(Path(sys.executable).parent / "alembic")


@pytest.fixture
def empty_database(pg_admin_url) -> str:
    url = create_database("dvach_migrate")
    yield url
    drop_database(url)


def start(command: list[str], url: str) -> subprocess.Popen:
    return subprocess.Popen(
        command,
        cwd=REPO,
        env={**os.environ, "DATABASE_URL": url, "LOG_FORMAT": "json"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def waiting_for_the_lock(engine) -> int:
    """Sessions waiting for the migrations' advisory lock (pg_locks, granted = false)."""
    with engine.connect() as connection:
        return connection.execute(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                " AND ((classid::bigint << 32) | objid::bigint) = :k AND database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database())"
            ),
            {"k": MIGRATION_LOCK_KEY},
        ).scalar()


def test_a_migration_waits_while_another_holds_the_lock(empty_database):
    engine = make_engine(empty_database)
    holder = engine.connect()
    holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
    holder.commit()
    migration = start([ALEMBIC, "upgrade", "heads"], empty_database)
    try:
        deadline = time.monotonic() + 60
        while waiting_for_the_lock(engine) == 0:
            assert migration.poll() is None, f"the migration did not wait: {migration.communicate()}"
            assert time.monotonic() < deadline, "the migration never asked for the lock"
            time.sleep(0.1)  # until PostgreSQL shows it waiting; bounded by the deadline
        assert not schema_state(empty_database).current, "migrated while the lock was held"
    finally:
        holder.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
        holder.commit()
        holder.close()
    _, stderr = migration.communicate(timeout=120)
    assert migration.returncode == 0, stderr
    assert schema_state(empty_database).ready
    engine.dispose()


def test_concurrent_migrations_all_succeed(empty_database):
    runs = [start([ALEMBIC, "upgrade", "heads"], empty_database) for _ in range(3)]
    for run in runs:
        _, stderr = run.communicate(timeout=180)
        assert run.returncode == 0, stderr
    state = schema_state(empty_database)
    assert state.ready and state.current == state.heads


def test_services_wait_for_the_schema_their_code_needs(empty_database):
    waiter = start([sys.executable, "-m", "shared.db.schema", "wait", "--timeout", "120"], empty_database)
    try:
        assert waiter.poll() is None, f"ready before any migration: {waiter.communicate()}"
        migration = subprocess.run(
            [ALEMBIC, "upgrade", "heads"],
            cwd=REPO,
            env={**os.environ, "DATABASE_URL": empty_database},
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert migration.returncode == 0, migration.stderr
        _, stderr = waiter.communicate(timeout=60)
        assert waiter.returncode == 0, stderr
        assert "schema ready" in stderr
    finally:
        if waiter.poll() is None:
            waiter.kill()


def test_waiting_gives_up_with_the_reason(empty_database):
    done = subprocess.run(
        [sys.executable, "-m", "shared.db.schema", "wait", "--timeout", "1"],
        cwd=REPO,
        env={**os.environ, "DATABASE_URL": empty_database},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "the schema is not ready" in done.stderr and "dvach-migrate" in done.stderr


def test_a_schema_ahead_of_the_code_is_ready():
    """Rolled back to an older release after a newer one migrated: the old code runs."""
    assert SchemaState(current=frozenset({"0002_new"}), heads=frozenset({"0001"}), known=frozenset({"0001"})).ready
    assert not SchemaState(current=frozenset(), heads=frozenset({"0001"}), known=frozenset({"0001"})).ready
    assert not SchemaState(
        current=frozenset({"0001"}), heads=frozenset({"0002"}), known=frozenset({"0001", "0002"})
    ).ready
