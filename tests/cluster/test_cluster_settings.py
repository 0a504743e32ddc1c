"""How REDIS_URL and REDIS_CLUSTER select a Redis Cluster (README, Configuration)."""

from __future__ import annotations

import pytest

from server.settings import Settings, SettingsError
from wire.redis import cluster_options, tagged


def test_redis_cluster_flag_turns_a_seed_url_into_a_cluster_url() -> None:
    settings = Settings.from_env({"REDIS_URL": "redis://:secret@10.0.0.5:7000/0", "REDIS_CLUSTER": "1"})
    assert settings.redis_cluster
    assert settings.redis_url == "redis+cluster://:secret@10.0.0.5:7000"
    options = cluster_options(settings.redis_url)
    assert [(node.host, node.port) for node in options["startup_nodes"]] == [("10.0.0.5", 7000)]
    assert options["password"] == "secret"


def test_a_cluster_url_names_several_seed_nodes() -> None:
    settings = Settings.from_env({"REDIS_URL": "rediss+cluster://app:pw@a.internal:7000,b.internal:7001"})
    assert settings.redis_cluster
    options = cluster_options(settings.redis_url or "")
    assert [(node.host, node.port) for node in options["startup_nodes"]] == [("a.internal", 7000),
                                                                             ("b.internal", 7001)]
    assert (options["username"], options["password"], options["ssl"]) == ("app", "pw", True)


def test_one_redis_stays_one_redis() -> None:
    settings = Settings.from_env({"REDIS_URL": "redis://127.0.0.1:6379/3"})
    assert not settings.redis_cluster
    assert settings.redis_url == "redis://127.0.0.1:6379/3"


@pytest.mark.parametrize("env, message", [
    ({"REDIS_CLUSTER": "1"}, "needs REDIS_URL"),
    ({"REDIS_CLUSTER": "1", "REDIS_URL": "redis://127.0.0.1:7000/2"}, "database 0 only"),
    ({"REDIS_CLUSTER": "1", "REDIS_URL": "unix:///run/redis.sock"}, "redis:// or rediss://"),
    ({"REDIS_URL": "redis://127.0.0.1:6379/0", "REDIS_PREFIX": "app{1}"}, "braces"),
])
def test_misconfigured_cluster_settings_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_one_channels_keys_share_a_hash_tag() -> None:
    assert tagged("scriptorium", "ev", "thread:42") == "scriptorium:ev:{thread:42}"
    assert tagged("scriptorium", "collab", "lesson:7") == "scriptorium:collab:{lesson:7}"
