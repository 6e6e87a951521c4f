"""The model store and the versions registry: write-once folders, one active version, Redis key."""

from __future__ import annotations

import json
import shutil

import pytest
import redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.db import make_engine
from shared.db.models import ModelVersion
from shared.model_store import (
    ACTIVE_KEY,
    InvalidVersion,
    ModelStore,
    VersionError,
    VersionExists,
    VersionMeta,
    VersionNotFound,
    activate_version,
    active_from_db,
    publish_version,
    read_active,
    restore_active_key,
)


@pytest.fixture(scope="module")
def engine(trainer_database_url):
    engine = make_engine(trainer_database_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def client(trainer_redis_url):
    client = redis.Redis.from_url(trainer_redis_url)
    yield client
    client.close()


@pytest.fixture()
def store(tmp_path) -> ModelStore:
    return ModelStore(tmp_path / "store")


def meta(name: str) -> VersionMeta:
    return VersionMeta(
        name=name,
        base_model="tiny",
        data={"source": "jsonl", "sha256": "ab" * 32},
        params={"lr": 1e-3},
        metrics={"eval_loss_after": 1.5},
    )


def test_publish_writes_a_complete_folder_and_registers_it(engine, store, tiny_model_dir):
    row = publish_version(engine, store, meta("store-a"), tiny_model_dir)
    folder = store.path_of("store-a")
    assert row.path == str(folder) and not row.is_active
    assert (folder / "model.safetensors").exists() and (folder / "tokenizer.json").exists()
    written = json.loads((folder / "version.json").read_text())
    assert written["name"] == "store-a" and written["data"]["sha256"] == "ab" * 32
    assert store.meta("store-a").metrics == {"eval_loss_after": 1.5}
    assert [p.name for p in store.root.iterdir()] == ["store-a"]  # no temporary folder left


def test_publish_never_overwrites(engine, store, tiny_model_dir, tmp_path):
    publish_version(engine, store, meta("store-b"), tiny_model_dir)
    before = (store.path_of("store-b") / "version.json").read_text()
    with pytest.raises(VersionExists):
        publish_version(engine, store, meta("store-b"), tiny_model_dir)
    # Registered elsewhere (another store): refused too, and nothing is left in this store.
    other = ModelStore(tmp_path / "other-store")
    with pytest.raises(VersionExists):
        publish_version(engine, other, meta("store-b"), tiny_model_dir)
    assert other.names() == []
    assert (store.path_of("store-b") / "version.json").read_text() == before


@pytest.mark.parametrize("name", ["", "../escape", ".hidden", "a/b", "x" * 200, "пробел имя"])
def test_bad_names_are_refused(store, name):
    with pytest.raises(VersionError):
        store.path_of(name)


def test_a_folder_that_is_no_checkpoint_is_refused(engine, store, tiny_model_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "config.json").write_text("{not json")
    with pytest.raises(InvalidVersion):
        publish_version(engine, store, meta("store-broken"), broken)
    assert store.names() == []
    with Session(engine) as session:
        assert session.scalar(select(ModelVersion).where(ModelVersion.name == "store-broken")) is None


def test_activation_keeps_one_active_and_tells_workers_through_redis(engine, client, store, tiny_model_dir):
    for name in ("store-c", "store-d"):
        publish_version(engine, store, meta(name), tiny_model_dir)
    first = activate_version(engine, client, "store-c")
    second = activate_version(engine, client, "store-d")
    assert second.generation > first.generation
    assert read_active(client) == second
    assert json.loads(client.get(ACTIVE_KEY))["name"] == "store-d"
    with Session(engine) as session:
        active = session.scalars(select(ModelVersion.name).where(ModelVersion.is_active.is_(True))).all()
    assert active == ["store-d"]
    with pytest.raises(VersionNotFound):
        activate_version(engine, client, "never-published")
    assert active_from_db(engine).name == "store-d"


def test_a_lost_redis_key_is_restored_from_the_database(engine, client, store, tiny_model_dir):
    publish_version(engine, store, meta("store-e"), tiny_model_dir)
    activate_version(engine, client, "store-e")
    client.delete(ACTIVE_KEY)
    restored = restore_active_key(client, engine)
    assert restored is not None and restored.name == "store-e"
    assert read_active(client) == restored
