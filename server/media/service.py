"""Lesson media: uploads streamed to MEDIA_DIR, typed by their content, or external URLs."""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from python_multipart.multipart import MultipartParser, parse_options_header
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from server.catalog.models import Lesson, Unit
from server.errors import PayloadTooLarge, UnsupportedMediaType, validation
from server.http import cursor_key, cursor_uuid, parse_datetime
from server.media.models import Media


@dataclass(frozen=True)
class Kind:
    mime: str
    ext: str
    media_type: str  # image | audio | video | document

    @property
    def inline(self) -> bool:
        return self.media_type in ("image", "audio", "video")


PNG = Kind("image/png", "png", "image")
JPEG = Kind("image/jpeg", "jpg", "image")
GIF = Kind("image/gif", "gif", "image")
WEBP = Kind("image/webp", "webp", "image")
MP3 = Kind("audio/mpeg", "mp3", "audio")
OGG = Kind("audio/ogg", "ogg", "audio")
WAV = Kind("audio/wav", "wav", "audio")
MP4 = Kind("video/mp4", "mp4", "video")
WEBM = Kind("video/webm", "webm", "video")
PDF = Kind("application/pdf", "pdf", "document")
KINDS = (PNG, JPEG, GIF, WEBP, MP3, OGG, WAV, MP4, WEBM, PDF)
BY_EXT = {k.ext: k for k in KINDS}

# Declared types a client may send for each kind (besides none and application/octet-stream).
ALIASES: dict[Kind, set[str]] = {
    PNG: {"image/png", "image/x-png"},
    JPEG: {"image/jpeg", "image/jpg", "image/pjpeg"},
    GIF: {"image/gif"},
    WEBP: {"image/webp"},
    MP3: {"audio/mpeg", "audio/mp3", "audio/mpeg3", "audio/x-mpeg-3"},
    OGG: {"audio/ogg", "application/ogg", "video/ogg", "audio/vorbis", "audio/opus"},
    WAV: {"audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave"},
    MP4: {"video/mp4", "audio/mp4", "application/mp4", "video/quicktime"},
    WEBM: {"video/webm", "audio/webm"},
    PDF: {"application/pdf", "application/x-pdf"},
}
GENERIC = {"", "application/octet-stream", "binary/octet-stream"}

SNIFF_BYTES = 64
# A part's headers are a few hundred bytes; growing them with ``+=`` up to the upload cap would
# copy megabytes per chunk (quadratic), so a longer header is refused.
MAX_PART_HEADER_BYTES = 16 * 1024


def sniff(head: bytes) -> Kind | None:
    """The allowed kind of a file from its first bytes, or None (magic numbers, not names)."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith((b"GIF87a", b"GIF89a")):
        return GIF
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return WAV
    if head.startswith(b"OggS"):
        return OGG
    if head.startswith(b"ID3") or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0
                                   and head[1] & 0x06 != 0):
        return MP3  # an ID3 tag or an MPEG audio frame sync with a valid layer
    if head[4:8] == b"ftyp":
        return MP4
    if head.startswith(b"\x1a\x45\xdf\xa3") and b"webm" in head:
        return WEBM
    if head.startswith(b"%PDF-"):
        return PDF
    return None


def declared_matches(kind: Kind, declared: str) -> bool:
    declared = declared.split(";")[0].strip().lower()
    return declared in GENERIC or declared in ALIASES[kind]


NAME = re.compile(r"^[0-9a-f]{32}\.[a-z0-9]{2,5}$")


def kind_of_name(name: str) -> Kind | None:
    if not NAME.match(name):
        return None
    return BY_EXT.get(name.rsplit(".", 1)[1])


def media_payload(media: Media) -> dict[str, Any]:
    return {"id": media.id, "lesson_id": media.lesson_id, "url": media.url, "media_type": media.media_type,
            "mime_type": media.mime_type, "size_bytes": media.size_bytes, "created_at": media.created_at}


# --- streamed multipart upload -------------------------------------------------------------


@dataclass
class StoredUpload:
    path: Path
    kind: Kind
    size: int


@dataclass
class _UploadState:
    media_dir: Path
    max_bytes: int
    headers: dict[bytes, bytes] = field(default_factory=dict)
    header_field: bytes = b""
    header_value: bytes = b""
    in_file: bool = False
    declared: str = ""
    file: IO[bytes] | None = None
    path: Path | None = None
    head: bytes = b""
    size: int = 0
    too_large: bool = False
    files_seen: int = 0
    file_complete: bool = False
    ended: bool = False

    def part_begin(self) -> None:
        self.headers, self.header_field, self.header_value = {}, b"", b""

    def header_field_data(self, data: bytes, start: int, end: int) -> None:
        self.header_field += data[start:end]
        self._check_header()

    def header_value_data(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]
        self._check_header()

    def _check_header(self) -> None:
        if len(self.header_field) + len(self.header_value) > MAX_PART_HEADER_BYTES:
            raise validation("body", f"a multipart header is over {MAX_PART_HEADER_BYTES} bytes")

    def header_end(self) -> None:
        self.headers[self.header_field.strip().lower()] = self.header_value.strip()
        self.header_field, self.header_value = b"", b""

    def headers_finished(self) -> None:
        _, options = parse_options_header(self.headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"")
        self.in_file = name == b"file" and self.files_seen == 0
        if self.in_file:
            self.files_seen += 1
            self.declared = self.headers.get(b"content-type", b"").decode("latin-1")
            self.media_dir.mkdir(parents=True, exist_ok=True)
            self.path = self.media_dir / f"{uuid.uuid4().hex}.part"
            self.file = self.path.open("xb")

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if not self.in_file or self.too_large:
            return
        chunk = data[start:end]
        self.size += len(chunk)
        if self.size > self.max_bytes:
            self.too_large = True
            self.discard()
            return
        if len(self.head) < SNIFF_BYTES:
            self.head += chunk[: SNIFF_BYTES - len(self.head)]
        assert self.file is not None
        self.file.write(chunk)

    def part_end(self) -> None:
        if self.in_file and self.file is not None:
            self.file.close()
            self.file_complete = True
        self.in_file = False

    def end(self) -> None:
        self.ended = True

    def discard(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None


async def store_upload(
    content_type: str, content_length: str | None, body: AsyncIterator[bytes], *, media_dir: Path,
    max_bytes: int,
) -> StoredUpload:
    """Stream the multipart ``file`` field to one file in ``media_dir``, never whole in memory.

    413 over ``max_bytes``, 415 for a type outside the allow-list or not what the client declared,
    422 without a ``file`` field; in every refused case nothing is left in ``media_dir``.
    """
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise validation("body", "a multipart body needs a boundary")
    # The multipart framing adds a few hundred bytes; far over the cap is refused unread.
    if content_length and content_length.isascii() and content_length.isdigit() and int(content_length) > max_bytes + 64 * 1024:
        raise PayloadTooLarge(f"The file is over {max_bytes} bytes.")
    if len(boundary) > 200:  # RFC 2046: at most 70 characters
        raise validation("body", "the multipart boundary is too long")
    state = _UploadState(media_dir=media_dir, max_bytes=max_bytes)
    parser = MultipartParser(boundary, callbacks={
        "on_part_begin": state.part_begin, "on_header_field": state.header_field_data,
        "on_header_value": state.header_value_data, "on_header_end": state.header_end,
        "on_headers_finished": state.headers_finished, "on_part_data": state.part_data,
        "on_part_end": state.part_end, "on_end": state.end,
    })
    try:
        async for chunk in body:
            if state.too_large or state.ended:
                continue  # drain the rest so the client reads our answer
            try:
                parser.write(chunk)
            except ValueError:  # python_multipart's parse errors are ValueErrors
                raise validation("body", "the multipart body is malformed") from None
        if state.too_large:
            raise PayloadTooLarge(f"The file is over {max_bytes} bytes.")
        try:
            parser.finalize()
        except ValueError:
            raise validation("body", "the multipart body is malformed") from None
        if state.path is None or state.files_seen == 0:
            raise validation("body.file", "a file is required in the multipart field 'file'")
        if not (state.file_complete and state.ended):
            raise validation("body", "the multipart body ends before its closing boundary")
        kind = sniff(state.head)
        if kind is None:
            raise UnsupportedMediaType(
                "This type of file is not accepted (PNG, JPEG, GIF, WebP, MP3, OGG, WAV, MP4, WebM, PDF).")
        if not declared_matches(kind, state.declared):
            raise UnsupportedMediaType(f"The file is {kind.mime}, not {state.declared}.")
        final = state.path.with_suffix("." + kind.ext)
        state.path.rename(final)
        state.path = None
        return StoredUpload(final, kind, state.size)
    except BaseException:
        state.discard()
        raise
    finally:
        if state.file is not None:
            state.file.close()


# --- per-user quota ------------------------------------------------------------------------------


async def used_bytes(session: AsyncSession, user_id: str, *, lock: bool = False) -> int:
    """Bytes of files ``user_id`` uploaded. ``lock`` serialises one user's quota checks until commit
    (two uploads streamed side by side must not both fit in what is left for one)."""
    if lock:
        await session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
                              {"key": f"media-quota:{user_id}"})
    used = (await session.execute(
        select(func.coalesce(func.sum(Media.size_bytes), 0)).where(Media.user_id == user_id)
    )).scalar_one()
    return int(used or 0)


def over_quota(quota: int, used: int, size: int | None = None) -> PayloadTooLarge:
    what = "This upload would take you over" if size else "You have used"
    return PayloadTooLarge(
        f"{what} your storage quota of {quota} bytes ({used} used); delete media to make room.",
        quota_bytes=quota, used_bytes=used)


def remove_files(media_dir: Path, names: Iterable[str]) -> None:
    """Remove stored files (after the transaction that dropped their rows committed)."""
    for name in names:
        if NAME.match(name):
            with contextlib.suppress(OSError):
                (media_dir / name).unlink(missing_ok=True)


def external_kind(url: str) -> tuple[str, str | None]:
    """``(media_type, mime_type)`` guessed from an external URL's extension ("link" when unknown)."""
    ext = urlsplit(url).path.rsplit(".", 1)[-1].lower() if "." in urlsplit(url).path else ""
    ext = {"jpeg": "jpg", "oga": "ogg"}.get(ext, ext)
    kind = BY_EXT.get(ext)
    return (kind.media_type, kind.mime) if kind else ("link", None)


# --- a course's media library ---------------------------------------------------------------


async def course_media(session: AsyncSession, course_id: uuid.UUID, *, limit: int,
                       after: list[Any] | None) -> list[dict[str, Any]]:
    """A page of the course's media, newest first, each with the lesson it belongs to and the
    lessons of the course whose Markdown body contains its URL (two queries)."""
    query = (select(Media, Lesson.title).join(Lesson, Lesson.id == Media.lesson_id)
             .join(Unit, Unit.id == Lesson.unit_id).where(Unit.course_id == course_id)
             .order_by(Media.created_at.desc(), Media.id.desc()).limit(limit + 1))
    if after is not None:
        created, last_id = cursor_key(after, parse_datetime, cursor_uuid)
        query = query.where((Media.created_at < created) | ((Media.created_at == created) & (Media.id < last_id)))
    rows = (await session.execute(query)).all()
    used: dict[uuid.UUID, list[dict[str, Any]]] = {media.id: [] for media, _ in rows}
    if rows:
        body = Lesson.content["body"].astext
        usage = (select(Media.id, Lesson.id, Lesson.title).select_from(Lesson)
                 .join(Unit, Unit.id == Lesson.unit_id)
                 .join(Media, func.strpos(body, Media.url) > 0)
                 .where(Unit.course_id == course_id, Media.id.in_(list(used)))
                 .order_by(Unit.position, Lesson.position, Lesson.id))
        for media_id, lesson_id, title in (await session.execute(usage)).all():
            used[media_id].append({"id": lesson_id, "title": title})
    return [media_payload(media) | {"lesson_title": title, "used_in": used[media.id],
                                    "_cursor": [media.created_at, media.id]}
            for media, title in rows]
