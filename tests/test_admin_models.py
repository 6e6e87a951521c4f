"""Admin: model versions listed and activated through the gateway (own Redis and database, so
the activation does not switch the session's shared worker)."""

from __future__ import annotations

import httpx
import pytest
import redis

from shared import model_store
from shared.db import make_engine, migrate
from shared.embedded import RedisServer
from tests.conftest import create_database, drop_database

TOKEN = "models-token-51"


@pytest.fixture(scope="module")
def isolated(tmp_path_factory, pg_admin_url):
    server = RedisServer(tmp_path_factory.mktemp("models-redis")).start()
    try:  # a failed setup must not leave the redis-server running
        url = create_database()
        try:
            migrate(url)
            yield server.url, url
        finally:
            drop_database(url)
    finally:
        server.stop()


def test_list_activate_and_show_active(start_gateway, isolated, tiny_model_dir, tmp_path):
    redis_url, database_url = isolated
    engine = make_engine(database_url)
    store = model_store.ModelStore(tmp_path / "store")
    for name in ("v1", "v2"):
        meta = model_store.VersionMeta(
            name=name, base_model="tiny", data={"sha256": "ab" * 32}, metrics={"eval_loss_after": 1.0}
        )
        model_store.publish_version(engine, store, meta, tiny_model_dir)
    gateway = start_gateway(
        {
            "REDIS_URL": redis_url,
            "DATABASE_URL": database_url,
            "ADMIN_TOKEN": TOKEN,
            "MODEL_STORE_DIR": str(tmp_path / "store"),
        }
    )
    with httpx.Client(base_url=gateway.base_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as admin:
        listed = admin.get("/admin/models").json()
        assert [v["name"] for v in listed] == ["v1", "v2"]
        assert not any(v["is_active"] for v in listed)
        assert admin.get("/admin/models/active").status_code == 404

        first = admin.post("/admin/models/v1/activate").json()
        second = admin.post("/admin/models/v2/activate").json()
        assert second["generation"] > first["generation"]
        assert admin.get("/admin/models/active").json()["name"] == "v2"
        assert [v["name"] for v in admin.get("/admin/models").json() if v["is_active"]] == ["v2"]
        assert admin.post("/admin/models/nope/activate").status_code == 404

    # What the workers watch: the Redis key names v2, with v1 as its fallback.
    active = model_store.read_active(redis.Redis.from_url(redis_url))
    assert (active.name, active.previous_name) == ("v2", "v1")
    engine.dispose()
