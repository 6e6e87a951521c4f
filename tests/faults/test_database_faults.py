"""Postgres stopped during a settings change through the admin API: a clear 503, no partial
write, and the next change succeeds once it is back. (A scrape with Postgres stopped mid-run is
in tests/scraper/test_db_restart.py.)"""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.orm import Session

from shared.db import make_engine, migrate
from shared.db.models import ChatSettings
from shared.embedded import EmbeddedPostgres

TOKEN = "db-fault-token-77"


@pytest.fixture
def own_postgres(private_postgres_dir):
    server = EmbeddedPostgres(private_postgres_dir / "pg").start()
    migrate(server.url)
    yield server
    server.stop()


def test_settings_change_with_postgres_down(start_gateway, worker, own_postgres):
    engine = make_engine(own_postgres.url)
    with Session(engine) as db:
        db.add(ChatSettings(chat_id=-77, title="конфа", reply_chance=0.1))
        db.commit()
    engine.dispose()
    gateway = start_gateway({"DATABASE_URL": own_postgres.url, "ADMIN_TOKEN": TOKEN})
    admin = httpx.Client(base_url=gateway.base_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert admin.get("/admin/chats/-77").status_code == 200

    own_postgres.stop()
    down = admin.patch("/admin/chats/-77", json={"reply_chance": 0.9, "muted": True})
    assert down.status_code == 503
    assert "database is unavailable" in down.json()["detail"]
    assert int(down.headers["retry-after"]) > 0
    # Replies do not need the database: the generation path keeps working.
    assert admin.post("/v1/replies", json={"dialog": ["бд упала"], "params": {"max_new_tokens": 4}}).status_code == 200

    own_postgres.start()
    engine = make_engine(own_postgres.url)
    with Session(engine) as db:
        chat = db.get(ChatSettings, -77)
        assert (chat.reply_chance, chat.muted) == (0.1, False)  # the failed change left nothing behind
    up = admin.patch("/admin/chats/-77", json={"reply_chance": 0.9})
    assert up.status_code == 200 and up.json()["reply_chance"] == 0.9
    engine.dispose()
    admin.close()
