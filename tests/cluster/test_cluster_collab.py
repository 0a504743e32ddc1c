"""Live co-editing with two nodes on a Redis Cluster: clients on different nodes converge, each
update is persisted once, and the master that owns the lesson's slot dies mid-edit: the clients
converge again and every edit acknowledged as saved is in PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from server.editing.models import LessonUpdate
from tests.support import ServerProcess, eventually
from tests.support.collab import YClient, co_editors, converge, lesson_row
from tests.support.redis_cluster import RedisCluster
from tests.support.yupdate import overlaps, struct_count


def cluster_node(database_url: str, data_dir: Path, redis_cluster: RedisCluster, name: str, *,
                 every_seed: bool = False) -> ServerProcess:
    """By default REDIS_CLUSTER=1 with one seed node's redis:// URL (the documented form; the
    client learns the other nodes from it). ``every_seed``: the ``redis+cluster://`` URL of every
    node, as a deployment that survives a dead node must give it: a node (re)started while its only
    seed is down cannot reach the cluster at all."""
    env = {"RATE_LIMIT_PER_MINUTE": "0", "NODE_ID": name}
    if every_seed:
        return ServerProcess(database_url=database_url, data_dir=data_dir, redis_url=redis_cluster.url, env=env)
    seed = redis_cluster.nodes[0].port
    return ServerProcess(database_url=database_url, data_dir=data_dir, redis_url=f"redis://127.0.0.1:{seed}/0",
                         env={**env, "REDIS_CLUSTER": "1"})


@pytest.fixture(scope="module")
def two_nodes(database_url: str, data_dir: Path,
              redis_cluster: RedisCluster) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    a = cluster_node(database_url, data_dir, redis_cluster, "cluster-a").start(120)
    b = cluster_node(database_url, data_dir, redis_cluster, "cluster-b").start(120)
    yield a, b
    a.stop()
    b.stop()


async def update_rows(db: AsyncEngine, lesson_id: object) -> list[bytes]:
    """The lesson's log: each row one update, or a writer's several merged."""
    async with db.connect() as conn:
        return list((await conn.execute(select(LessonUpdate.update).where(
            LessonUpdate.lesson_id == lesson_id))).scalars())


async def test_two_nodes_on_a_cluster_converge_and_persist_each_update_once(
        two_nodes: tuple[ServerProcess, ServerProcess], db: AsyncEngine) -> None:
    a_node, b_node = two_nodes
    pair = await co_editors(db, a_node, b_node, title="T", body="start")
    author, lesson, a, b = pair.author, pair.lesson, pair.a, pair.b
    assert a.text() == b.text() == {"title": "T", "body": "start"}
    a.body.insert(0, "A:")
    b.body.insert(len(str(b.body)), ":B")
    assert (await converge([a, b], within=10))["body"] == "A:start:B"
    for n in range(20):
        (a if n % 2 else b).body.insert(0, f"<{n}>")
    text = await converge([a, b], within=10)
    assert all(f"<{n}>" in text["body"] for n in range(20))
    await a.set_awareness({"user": "a"})

    async def b_sees_a() -> bool:
        return {"user": "a"} in b.awareness.values()

    await eventually(b_sees_a, within=5)
    await a.saved()
    await b.saved()
    rows = await update_rows(db, lesson.lesson_id)
    # each change stored once (no client id and clock in two rows), and all of them
    assert not overlaps(rows) and struct_count(rows) == struct_count([a.doc.get_update()])
    late = await YClient.connect(b_node.ws_url, lesson.id, author.token)
    assert late.text() == text
    for client in (a, b, late):
        await client.close()

    async def materialised() -> bool:
        return bool((await lesson_row(db, lesson.id))["content"]["body"] == text["body"])

    await eventually(materialised, within=10)


async def test_failover_of_the_lessons_master_mid_edit(
        database_url: str, data_dir: Path, db: AsyncEngine, redis_cluster: RedisCluster) -> None:
    a_node = cluster_node(database_url, data_dir, redis_cluster, "failover-a", every_seed=True).start(120)
    b_node = cluster_node(database_url, data_dir, redis_cluster, "failover-b", every_seed=True).start(120)
    try:
        pair = await co_editors(db, a_node, b_node, body="")
        author, lesson, a, b = pair.author, pair.lesson, pair.a, pair.b
        saved: list[str] = []

        async def edit(client: YClient, tag: str, count: int) -> None:
            for n in range(count):
                marker = f"<{tag}{n}>"
                client.body.insert(len(str(client.body)), marker)
                if n % 5 == 4:
                    await client.saved(within=30)
                    saved.extend(f"<{tag}{m}>" for m in range(n - 4, n + 1))
                await asyncio.sleep(0.01)

        await asyncio.gather(edit(a, "a", 10), edit(b, "b", 10))
        # mid-stream: the master that serves the lesson's channel dies while both keep typing
        failover = asyncio.create_task(asyncio.to_thread(redis_cluster.fail_over_master_of,
                                                         f"{{lesson:{lesson.id}}}"))
        await asyncio.gather(edit(a, "A", 20), edit(b, "B", 20))
        await failover
        await asyncio.gather(edit(a, "x", 10), edit(b, "y", 10))
        text = await converge([a, b], within=30)
        assert all(marker in text["body"] for marker in saved)
        assert len(saved) == 80  # every edit was acknowledged
        rows = await update_rows(db, lesson.lesson_id)
        assert not overlaps(rows) and struct_count(rows) == struct_count([a.doc.get_update()])
        # What was acknowledged as saved is in PostgreSQL: both nodes die (kill -9), a node
        # started afresh loads the lesson from the database alone.
        a_node.kill()
        b_node.kill()
        await a.wait_closed()
        await b.wait_closed()
        a_node.start(120)
        fresh = await YClient.connect(a_node.ws_url, lesson.id, author.token)
        assert all(marker in str(fresh.body) for marker in saved)
        await fresh.close()
    finally:
        a_node.stop()
        b_node.stop()
        await asyncio.to_thread(redis_cluster.heal)  # the dead master rejoins (as a replica)
