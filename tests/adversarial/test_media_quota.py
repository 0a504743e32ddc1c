"""Uploads count against a per-user storage quota (``MEDIA_QUOTA_BYTES``), also when sent side by side.

Before: each upload was capped (``MEDIA_MAX_BYTES``) but a user could upload without end — an
author of their own course filled the disk at 50 MiB a request.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import DevUser, ServerProcess, dev_user, running
from tests.support.catalog import build_course, ok

QUOTA = 4096
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * (1500 - 16)  # 1,500 bytes


@pytest.fixture(scope="module")
def media_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="scr-quota-test-"))


@pytest.fixture(scope="module")
def quota_server(database_url: str, media_dir: Path) -> Iterator[ServerProcess]:
    with running(ServerProcess(database_url=database_url, data_dir=media_dir.parent / (media_dir.name + "-data"),
                               env={"RATE_LIMIT_PER_MINUTE": "0", "MEDIA_QUOTA_BYTES": str(QUOTA),
                                    "MEDIA_DIR": str(media_dir)})) as proc:
        yield proc


@pytest.fixture(scope="module")
async def qclient(quota_server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=quota_server.base_url, timeout=30) as c:
        yield c


def files_in(media_dir: Path) -> set[str]:
    return {p.name for p in media_dir.iterdir()} if media_dir.exists() else set()


async def upload(client: httpx.AsyncClient, user: DevUser, lesson: str, data: bytes = PNG) -> httpx.Response:
    return await client.post(f"/api/lessons/{lesson}/media", files={"file": ("a.png", data, "image/png")},
                             headers=user.headers)


async def test_quota_per_user(qclient: httpx.AsyncClient, media_dir: Path) -> None:
    author = await dev_user(qclient, "Quota Author")
    other = await dev_user(qclient, "Quota Other")
    lesson = (await build_course(qclient, author)).first_lesson
    other_lesson = (await build_course(qclient, other)).first_lesson
    first = ok(await upload(qclient, author, lesson), 201)
    ok(await upload(qclient, author, lesson), 201)
    before = files_in(media_dir)
    refused = await upload(qclient, author, lesson)  # 4,500 > 4,096
    assert refused.status_code == 413, refused.text
    problem = refused.json()
    assert problem["quota_bytes"] == QUOTA and problem["used_bytes"] == 3000 and "quota" in problem["detail"]
    big = await upload(qclient, author, lesson, PNG + b"\x00" * 10_000)  # over what is left, streamed
    assert big.status_code == 413
    assert files_in(media_dir) == before  # a refused upload leaves nothing
    ok(await upload(qclient, other, other_lesson), 201)  # the quota is per user
    assert (await qclient.delete(f"/api/media/{first['id']}", headers=author.headers)).status_code == 204
    ok(await upload(qclient, author, lesson), 201)  # deleting frees room


async def test_side_by_side_uploads_never_exceed_the_quota(qclient: httpx.AsyncClient, media_dir: Path) -> None:
    author = await dev_user(qclient, "Quota Racer")
    lesson = (await build_course(qclient, author)).first_lesson
    before = files_in(media_dir)
    results = await asyncio.gather(*(upload(qclient, author, lesson) for _ in range(6)))
    codes = sorted(r.status_code for r in results)
    assert codes == [201, 201, 413, 413, 413, 413], codes
    assert len(files_in(media_dir) - before) == 2
