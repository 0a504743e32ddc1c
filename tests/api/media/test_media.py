"""Lesson media through a real server: streamed uploads typed by content, caps, serving, deletion."""

from __future__ import annotations

import struct
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import DevUser, ServerProcess, dev_user
from tests.support.learning import BuiltCourse, build_course, enroll

CAP = 100_000

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 64
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 64
GIF = b"GIF89a" + b"\x01\x00\x01\x00" + b"\x00" * 32
WEBP = b"RIFF" + struct.pack("<I", 40) + b"WEBPVP8 " + b"\x00" * 32
WAV = b"RIFF" + struct.pack("<I", 40) + b"WAVEfmt " + b"\x00" * 32
MP3 = b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\x00" * 32
OGG = b"OggS\x00\x02" + b"\x00" * 40
MP4 = b"\x00\x00\x00\x18ftypisom" + b"\x00" * 40
WEBM = b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm" + b"\x00" * 32
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n"
HTML = b"<!doctype html><script>alert(document.cookie)</script>"


@pytest.fixture(scope="module")
def media_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="scr-media-test-"))


@pytest.fixture(scope="module")
def media_server(database_url: str, media_dir: Path) -> Iterator[ServerProcess]:
    """A server of its own, so its MEDIA_DIR holds only this module's files and the cap is small."""
    proc = ServerProcess(database_url=database_url, data_dir=media_dir.parent / (media_dir.name + "-data"),
                         env={"RATE_LIMIT_PER_MINUTE": "0", "MEDIA_MAX_BYTES": str(CAP),
                              "MEDIA_DIR": str(media_dir)}).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
async def mclient(media_server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=media_server.base_url, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
async def setting(mclient: httpx.AsyncClient) -> tuple[DevUser, DevUser, BuiltCourse]:
    author = await dev_user(mclient, "Media Author")
    learner = await dev_user(mclient, "Media Learner")
    course = await build_course(mclient, author, lessons_per_unit=2)
    await enroll(mclient, learner, course.id)
    return author, learner, course


def files_in(media_dir: Path) -> set[str]:
    return {p.name for p in media_dir.iterdir()} if media_dir.exists() else set()


async def upload(client: httpx.AsyncClient, user: DevUser, lesson: str, data: bytes, name: str,
                 declared: str | None) -> httpx.Response:
    file = (name, data, declared) if declared else (name, data)
    return await client.post(f"/api/lessons/{lesson}/media", files={"file": file}, headers=user.headers)


@pytest.mark.parametrize(("data", "mime", "media_type"), [
    (PNG, "image/png", "image"), (JPEG, "image/jpeg", "image"), (GIF, "image/gif", "image"),
    (WEBP, "image/webp", "image"), (WAV, "audio/wav", "audio"), (MP3, "audio/mpeg", "audio"),
    (OGG, "audio/ogg", "audio"), (MP4, "video/mp4", "video"), (WEBM, "video/webm", "video"),
    (PDF, "application/pdf", "document"),
])
async def test_each_allowed_type_is_stored_and_served(
    mclient: httpx.AsyncClient, setting: tuple[DevUser, DevUser, BuiltCourse], media_dir: Path,
    data: bytes, mime: str, media_type: str,
) -> None:
    author, _, course = setting
    before = files_in(media_dir)
    created = await upload(mclient, author, course.lesson_ids[0], data, "upload.bin", "application/octet-stream")
    assert created.status_code == 201, created.text
    media = created.json()
    assert media["mime_type"] == mime and media["media_type"] == media_type
    assert media["size_bytes"] == len(data) and media["url"].startswith("/media/")
    assert files_in(media_dir) - before == {media["url"].removeprefix("/media/")}
    served = await mclient.get(media["url"])
    assert served.status_code == 200 and served.content == data
    assert served.headers["content-type"].split(";")[0] == mime
    assert served.headers["x-content-type-options"] == "nosniff"
    disposition = served.headers.get("content-disposition", "")
    assert disposition.startswith("attachment" if media_type == "document" else "inline")


async def test_disguised_and_unknown_types_are_refused_with_nothing_on_disk(
    mclient: httpx.AsyncClient, setting: tuple[DevUser, DevUser, BuiltCourse], media_dir: Path,
) -> None:
    author, _, course = setting
    lesson = course.lesson_ids[0]
    before = files_in(media_dir)
    cases = [
        (HTML, "cat.png", "image/png"),            # HTML named and declared as a PNG
        (HTML, "page.html", "text/html"),
        (b"MZ\x90\x00" + b"\x00" * 60, "setup.exe", None),
        (b"", "empty.png", "image/png"),
        (PNG, "cat.png", "image/jpeg"),            # a real PNG declared as something else
        (PDF, "doc.png", "image/png"),
    ]
    for data, name, declared in cases:
        response = await upload(mclient, author, lesson, data, name, declared)
        assert response.status_code == 415, (name, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    assert files_in(media_dir) == before
    listed = (await mclient.get(f"/api/lessons/{lesson}/media", headers=author.headers)).json()["items"]
    assert all(m["url"].startswith("/media/") for m in listed)
    not_multipart = await mclient.post(f"/api/lessons/{lesson}/media", content=PNG,
                                       headers={**author.headers, "content-type": "image/png"})
    assert not_multipart.status_code == 415
    no_file = await mclient.post(f"/api/lessons/{lesson}/media", files={"other": ("a.png", PNG)},
                                 headers=author.headers)
    assert no_file.status_code == 422
    assert files_in(media_dir) == before


async def test_over_the_cap_is_413_with_nothing_on_disk(
    mclient: httpx.AsyncClient, setting: tuple[DevUser, DevUser, BuiltCourse], media_dir: Path,
) -> None:
    author, _, course = setting
    before = files_in(media_dir)
    at_cap = await upload(mclient, author, course.lesson_ids[1], PNG + b"\x00" * (CAP - len(PNG)), "a.png",
                          "image/png")
    assert at_cap.status_code == 201 and at_cap.json()["size_bytes"] == CAP
    after_ok = files_in(media_dir)
    assert len(after_ok - before) == 1
    # Just over (streamed, then refused) and far over (refused from Content-Length).
    for size in (CAP + 1, CAP + 50_000, CAP * 5):
        response = await upload(mclient, author, course.lesson_ids[1], PNG + b"\x00" * (size - len(PNG)),
                                "big.png", "image/png")
        assert response.status_code == 413, size
        assert response.headers["content-type"] == "application/problem+json"
        assert files_in(media_dir) == after_ok


async def test_external_urls(mclient: httpx.AsyncClient, setting: tuple[DevUser, DevUser, BuiltCourse]) -> None:
    author, _, course = setting
    lesson = course.lesson_ids[1]
    created = await mclient.post(f"/api/lessons/{lesson}/media", json={"url": "https://cdn.example.org/a/clip.mp4"},
                                 headers=author.headers)
    assert created.status_code == 201
    assert created.json()["url"] == "https://cdn.example.org/a/clip.mp4"
    assert created.json()["media_type"] == "video" and created.json()["size_bytes"] is None
    for bad in ("javascript:alert(1)", "ftp://example.org/x.png", "file:///etc/passwd", "not a url"):
        response = await mclient.post(f"/api/lessons/{lesson}/media", json={"url": bad}, headers=author.headers)
        assert response.status_code == 422, bad
    assert (await mclient.post(f"/api/lessons/{lesson}/media", json={"url": 5},
                               headers=author.headers)).status_code == 422


async def test_who_may_upload_list_and_delete(
    mclient: httpx.AsyncClient, setting: tuple[DevUser, DevUser, BuiltCourse], media_dir: Path,
) -> None:
    author, learner, course = setting
    lesson = course.lesson_ids[0]
    assert (await upload(mclient, learner, lesson, PNG, "a.png", "image/png")).status_code == 403
    assert (await mclient.post(f"/api/lessons/{lesson}/media", files={"file": ("a.png", PNG)})).status_code == 401
    assert (await upload(mclient, author, str(uuid.uuid4()), PNG, "a.png", None)).status_code == 404
    assert (await upload(mclient, author, "xyz", PNG, "a.png", None)).status_code == 404
    editor = await dev_user(mclient, "Media Editor")
    added = await mclient.post(f"/api/courses/{course.id}/collaborators",
                               json={"clerk_id": editor.clerk_id, "role": "editor"}, headers=author.headers)
    assert added.status_code == 201
    created = await upload(mclient, editor, lesson, GIF, "a.gif", "image/gif")
    assert created.status_code == 201
    media = created.json()
    listed = await mclient.get(f"/api/lessons/{lesson}/media", headers=learner.headers)
    assert listed.status_code == 200
    assert media["id"] in [m["id"] for m in listed.json()["items"]]
    assert (await mclient.get(f"/api/lessons/{lesson}/media")).status_code == 401  # signed-in only (§2)
    assert (await mclient.delete(f"/api/media/{media['id']}", headers=learner.headers)).status_code == 403
    assert (await mclient.delete(f"/api/media/{media['id']}")).status_code == 401
    name = media["url"].removeprefix("/media/")
    assert name in files_in(media_dir)
    assert (await mclient.delete(f"/api/media/{media['id']}", headers=editor.headers)).status_code == 204
    assert name not in files_in(media_dir)
    assert (await mclient.get(media["url"])).status_code == 404
    assert (await mclient.delete(f"/api/media/{media['id']}", headers=editor.headers)).status_code == 404
    assert (await mclient.delete("/api/media/bad", headers=editor.headers)).status_code == 404
    draft = await build_course(mclient, author, publish=False, lessons_per_unit=1)
    assert (await mclient.get(f"/api/lessons/{draft.lesson_ids[0]}/media",
                              headers=learner.headers)).status_code == 404
    assert (await mclient.get("/media/..%2F..%2Fetc%2Fpasswd")).status_code == 404
    assert (await mclient.get("/media/nothing.png")).status_code == 404


async def test_deleting_a_lesson_removes_its_files(
    mclient: httpx.AsyncClient, setting: tuple[DevUser, DevUser, BuiltCourse], media_dir: Path,
) -> None:
    author, _, _ = setting
    course = await build_course(mclient, author, lessons_per_unit=1)
    created = await upload(mclient, author, course.lesson_ids[0], JPEG, "a.jpg", "image/jpeg")
    name = created.json()["url"].removeprefix("/media/")
    assert name in files_in(media_dir)
    assert (await mclient.delete(f"/api/lessons/{course.lesson_ids[0]}", headers=author.headers)).status_code == 204
    assert name not in files_in(media_dir)
