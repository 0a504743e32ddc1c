"""Sync step 1 / query-awareness floods on ``WS /collab/lessons/{id}`` (issue 11, item 1).

Each 4-byte step 1 with an empty state vector asks for the whole document. Packed into one
write by a client that never reads, the answers used to bypass the 16 MiB send limit (counted
only once the transport paused): 2,000 frames grew the node by ~0.5 GB. Now every queued byte
counts (a non-reader is closed 4008 with at most 16 MiB + one frame waiting for it), and the
answers are throttled per socket, so a storm cannot burn the event loop either.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from pycrdt import Map
from sqlalchemy.ext.asyncio import AsyncEngine

from collab import protocol as p
from tests.adversarial.probe import AttackWatch
from tests.adversarial.rawws import RawSocket, client_frames
from tests.support import ServerProcess, dev_user, eventually, running
from tests.support.collab import YClient, make_lesson

pytestmark = pytest.mark.loop_timing  # bounds the event loop's lag: run alone (scripts/test)

MiB = 1024 * 1024
LIMIT = 16 * MiB
BURST = 8  # COLLAB_SYNC_BURST, set explicitly below (the default too)
PER_SECOND = 2.0  # COLLAB_SYNC_PER_SECOND
EMPTY_STEP1 = p.step1_frame(b"\x00")  # "send me everything": 4 bytes


@pytest.fixture(scope="module")
def flood_server(database_url: str, data_dir: Path) -> Iterator[ServerProcess]:
    with running(ServerProcess(database_url=database_url, data_dir=data_dir, env={
            "RATE_LIMIT_PER_MINUTE": "0", "COLLAB_SYNC_BURST": str(BURST),
            "COLLAB_SYNC_PER_SECOND": str(PER_SECOND)})) as proc:
        yield proc


@pytest.fixture(scope="module")
async def flood_client(flood_server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=flood_server.base_url, timeout=30) as c:
        yield c


async def _attacker(server: ServerProcess, lesson_id: str, token: str) -> RawSocket:
    sock = await RawSocket.open("127.0.0.1", server.port, f"/collab/lessons/{lesson_id}?token={token}")
    _, payload = await sock.read_frame()  # the server's own step 1: the peer has joined
    assert payload[:2] == bytes((p.MSG_SYNC, p.SYNC_STEP1)), payload[:4]
    return sock


async def test_a_non_reader_asking_for_the_document_is_closed_4008_at_16_mib(
        flood_server: ServerProcess, flood_client: httpx.AsyncClient, db: AsyncEngine) -> None:
    author = await dev_user(flood_client, "Author")
    lesson = await make_lesson(db, author.clerk_id, body="b" * 1000)
    editor = await YClient.connect(flood_server.ws_url, lesson.id, author.token)
    meta = editor.doc.get("meta", type=Map)
    meta["a"] = "x" * 1_200_000  # each update stays under the 2 MiB message limit
    meta["b"] = "y" * 1_200_000
    await editor.roundtrip()
    doc_size = len(editor.doc.get_update())
    assert doc_size > 2 * MiB

    attacker = await _attacker(flood_server, lesson.id, author.token)
    async with AttackWatch(flood_server) as watch:
        # 60 whole-document requests (~140 MB of answers) in one 240-byte write, then no reading.
        await attacker.send_frames([EMPTY_STEP1] * 60)
        await editor.roundtrip()  # most likely after the attacker's write; the count below holds either way
        await eventually(lambda: _at_least(watch.during, 10), within=20)  # the innocent client's samples
    got = await attacker.read_until_close(give_up_after=LIMIT + doc_size + 64 * 1024, within=15)
    attacker.close()
    print(f"\nnon-reader: {got.payload_bytes / MiB:.1f} MiB queued, close {got.close_code}, "
          f"rss +{watch.rss_growth / MiB:.1f} MiB, lag>100ms x{watch.late_wakeups:.0f}")
    assert got.payload_bytes <= LIMIT + doc_size, f"{got.payload_bytes / MiB:.1f} MiB were queued for one socket"
    assert got.close_code == 4008
    assert watch.rss_growth < 3 * LIMIT, f"the node grew by {watch.rss_growth / MiB:.0f} MiB"
    watch.assert_unharmed()
    # The room goes on for everyone else.
    editor.body.insert(0, "still here ")
    await editor.roundtrip()
    await editor.close()


async def test_a_step1_storm_is_throttled_and_does_not_hold_the_loop(
        flood_server: ServerProcess, flood_client: httpx.AsyncClient, db: AsyncEngine) -> None:
    author = await dev_user(flood_client, "Author")
    lesson = await make_lesson(db, author.clerk_id, body="lorem ipsum " * 16_000)  # ~190 KB
    attacker = await _attacker(flood_server, lesson.id, author.token)
    answers = 0
    saved: asyncio.Queue[int] = asyncio.Queue()

    async def read() -> None:  # a fast reader: this attacker wants CPU, not memory
        nonlocal answers
        while True:
            _, payload = await attacker.read_frame()
            if payload[:2] == bytes((p.MSG_SYNC, p.SYNC_STEP2)):
                answers += 1
            elif payload[:1] == bytes((p.MSG_SAVED,)):
                saved.put_nowait(p.read_var_uint(payload, 1)[0])

    # Rounds of 100 step 1 and 100 query-awareness frames (2 KB), each closed by a "saved?" that is
    # answered after them. Paced by those answers, so what is measured is the cost of answering,
    # not uvicorn parsing one 256 KB read of tiny frames (~10 us a frame, whatever they say).
    rounds = [client_frames([EMPTY_STEP1, bytes((p.MSG_QUERY_AWARENESS,))] * 100 + [p.query_saved_frame(n)])
              for n in range(1, 51)]
    reader = asyncio.create_task(read())
    try:
        async with AttackWatch(flood_server) as watch:
            started = time.monotonic()
            for n, blob in enumerate(rounds, 1):
                await attacker.send_raw(blob)
                assert await asyncio.wait_for(saved.get(), 60) == n
            elapsed = time.monotonic() - started
        print(f"\nstorm: {answers} step-2 answers to 5,000 step 1 in {elapsed:.2f}s, "
              f"lag>100ms x{watch.late_wakeups:.0f}, innocent median {watch.during_median * 1000:.1f} ms "
              f"(idle {watch.idle_median * 1000:.1f}; {[round(x * 1000) for x in watch.during]})")
        watch.assert_unharmed()
        assert answers <= BURST + PER_SECOND * elapsed + 1
    finally:
        reader.cancel()
        attacker.close()


async def _at_least(samples: list[float], count: int) -> bool:
    await asyncio.sleep(0)
    return len(samples) >= count
