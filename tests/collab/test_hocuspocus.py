"""The Hocuspocus protocol (collab/hocuspocus.py) over the rooms' seam, in memory: the codec, a
socket's documents authenticated one by one, read-only viewers, acknowledgements after commit,
closing one document, bad frames and limits. No server, no socket: a Session with a recording
ASGI ``send`` and the in-memory store of the seam test."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from pycrdt import Doc, Text

from collab import hocuspocus as h
from collab import protocol as p
from collab.access import Denied, Grant, Scope
from collab.manager import RoomManager
from tests.collab.test_collab_seam import MemoryStore
from tests.support.yupdate import overlaps, struct_count
from wire.websocket import CLOSE_FORBIDDEN, CLOSE_UNAUTHORIZED

LESSON = "00000000-0000-4000-8000-0000000000d1"
OTHER = "00000000-0000-4000-8000-0000000000d2"


# --- codec ----------------------------------------------------------------------------------


def test_messages_round_trip() -> None:
    address = "lesson:" + LESSON + "\0session-1"
    frame = h.auth_frame(address, "tok€n")
    message = h.decode(frame)
    assert (message.address, message.document, message.type) == (address, "lesson:" + LESSON, h.MSG_AUTH)
    assert h.read_token(message.body) == "tok€n"

    for frame, kind, body in [
        (h.authenticated_frame("d", read_only=True), h.MSG_AUTH, b"\x02\x08readonly"),
        (h.authenticated_frame("d", read_only=False), h.MSG_AUTH, b"\x02\x0aread-write"),
        (h.permission_denied_frame("d", "4401: no"), h.MSG_AUTH, b"\x01\x084401: no"),
        (h.sync_status_frame("d", True), h.MSG_SYNC_STATUS, b"\x01"),
        (h.sync_status_frame("d", False), h.MSG_SYNC_STATUS, b"\x00"),
        (h.close_frame("d", "bye"), h.MSG_CLOSE, b"\x03bye"),
        (h.encode("d", h.MSG_SYNC, p.step1_frame(b"\x00")[1:]), h.MSG_SYNC, b"\x00\x01\x00"),
    ]:
        assert h.decode(frame) == h.Message("d", kind, body)
    long_name = "lesson:" + "x" * 300  # a name over 127 bytes: a two-byte length
    assert h.decode(h.encode(long_name, h.MSG_QUERY_AWARENESS)).address == long_name


@pytest.mark.parametrize("frame", [b"\x05abc", b"\xff\xff\xff", b"\x02ab", b"\x01\xff"])
def test_unreadable_frames_raise(frame: bytes) -> None:
    with pytest.raises(h.HocuspocusError):
        h.decode(frame)


def test_document_names_are_lessons() -> None:
    assert h.lesson_of("lesson:" + LESSON.upper()) == LESSON
    for name in ("lesson:nope", "course:" + LESSON, LESSON, ""):
        with pytest.raises(Denied) as refused:
            h.lesson_of(name)
        assert refused.value.code == 4404


# --- a socket in memory ---------------------------------------------------------------------


class Socket:
    """The ASGI ``send`` of one socket: decoded messages in order, and its close."""

    def __init__(self) -> None:
        self.messages: list[h.Message] = []
        self.raw: list[bytes] = []
        self.close_code: int | None = None
        self.changed = asyncio.Event()

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "websocket.close":
            self.close_code = message["code"]
        else:
            data = message["bytes"]
            self.raw.append(data)
            if len(data) > 1:
                self.messages.append(h.decode(data))
        self.changed.set()

    def of(self, address: str, kind: int | None = None) -> list[h.Message]:
        return [m for m in self.messages if m.address == address and (kind is None or m.type == kind)]

    async def until(self, check: Callable[[], Any], within: float = 5.0) -> Any:
        async def wait() -> Any:
            while not (found := check()):
                self.changed.clear()
                await self.changed.wait()
            return found
        return await asyncio.wait_for(wait(), within)


USERS = {"writer": True, "viewer": False}


async def _authorize(scope: Scope, lesson_id: str) -> Grant:
    headers = dict(scope.get("headers", []))
    token = headers.get(b"authorization", b"").decode().removeprefix("Bearer ")
    if token == "slow":
        await asyncio.sleep(30)
    if token not in USERS:
        raise Denied(CLOSE_UNAUTHORIZED, "The token is malformed.")
    if lesson_id == OTHER and token == "viewer":
        raise Denied(CLOSE_FORBIDDEN, "Only the author, collaborators and admins may join.")
    return Grant(token, can_write=USERS[token])


async def _recheck(lesson_id: str, grant: Grant) -> bool:
    return grant.can_write


def _edit(source: Doc[Any], text: str) -> bytes:
    state = source.get_state()
    source.get("body", type=Text).insert(0, text)
    return source.get_update(state)


def _text(messages: list[h.Message], base: bytes) -> str:
    """The body of a document built from ``base`` and the sync step 2 and update messages a
    socket got."""
    doc: Doc[Any] = Doc()
    doc.apply_update(base)
    for message in messages:
        frame = p.parse_frame(bytes((p.MSG_SYNC,)) + message.body)
        if frame.sync in (p.SYNC_STEP2, p.SYNC_UPDATE):
            doc.apply_update(frame.payload)
    return str(doc.get("body", type=Text))


def _update(address: str, update: bytes) -> bytes:
    return h.encode(address, h.MSG_SYNC, p.update_frame(update)[1:])


Test = Callable[[RoomManager, MemoryStore], Awaitable[None]]


async def _with_rooms(test: Test) -> None:
    store = MemoryStore()
    rooms = RoomManager(store, _authorize, _recheck, flush_interval=0.01)  # type: ignore[arg-type]
    await rooms.start()
    try:
        await test(rooms, store)
    finally:
        await rooms.stop()


def _session(rooms: RoomManager) -> tuple[h.Session, Socket]:
    socket = Socket()
    return h.Session(rooms, {"type": "websocket", "headers": []}, socket.send), socket


async def _two_documents_open(rooms: RoomManager) -> tuple[h.Session, Socket, str, str]:
    """A writer's socket with both lessons open and synced: (session, socket, first, second)."""
    session, socket = _session(rooms)
    first, second = "lesson:" + LESSON, "lesson:" + OTHER
    session.receive(h.auth_frame(first, "writer"))
    session.receive(h.auth_frame(second, "writer"))
    await socket.until(lambda: socket.of(first, h.MSG_SYNC) and socket.of(second, h.MSG_SYNC))
    return session, socket, first, second


async def test_documents_are_authenticated_each_with_their_own_token() -> None:
    async def test(rooms: RoomManager, store: MemoryStore) -> None:
        session, socket = _session(rooms)
        writer, viewer = "lesson:" + LESSON, "lesson:" + LESSON + "\0s2"
        forbidden, unknown = "lesson:" + OTHER, "notes:1"
        # The provider sends its step 1 right behind the token: it waits for the auth.
        session.receive(h.encode(writer, h.MSG_SYNC, p.step1_frame(b"\x00")[1:]))
        assert socket.messages == []
        session.receive(h.auth_frame(writer, "writer"))
        session.receive(h.auth_frame(viewer, "viewer"))
        session.receive(h.auth_frame(forbidden, "viewer"))
        session.receive(h.auth_frame(unknown, "writer"))
        session.receive(h.auth_frame("lesson:" + str(uuid.uuid4()), "bad"))
        await socket.until(lambda: len(socket.of(viewer, h.MSG_SYNC)) >= 1 and len(socket.of(writer, h.MSG_SYNC)) >= 2)
        assert socket.of(writer, h.MSG_AUTH)[0].body == b"\x02\x0aread-write"
        assert socket.of(viewer, h.MSG_AUTH)[0].body == b"\x02\x08readonly"
        assert h.read_var_string(socket.of(forbidden, h.MSG_AUTH)[0].body, 1)[0].startswith("4403: ")
        assert h.read_var_string(socket.of(unknown, h.MSG_AUTH)[0].body, 1)[0].startswith("4404: ")
        assert socket.close_code is None  # refusals end documents, not the socket
        # The authenticated writer got the room's step 1 and the answer to its queued step 1.
        syncs = [p.parse_frame(bytes((0,)) + m.body).sync for m in socket.of(writer, h.MSG_SYNC)]
        assert sorted(syncs[:2]) == [p.SYNC_STEP1, p.SYNC_STEP2]
        room = rooms.rooms[LESSON]
        assert len(room.peers) == 2
        session.finish()
        assert room.peers == []

    await _with_rooms(test)


async def test_viewer_updates_are_never_applied_and_writers_are_acked_once_committed() -> None:
    async def test(rooms: RoomManager, store: MemoryStore) -> None:
        writer_session, writer_socket = _session(rooms)
        viewer_session, viewer_socket = _session(rooms)
        name = "lesson:" + LESSON
        writer_session.receive(h.auth_frame(name, "writer"))
        viewer_session.receive(h.auth_frame(name, "viewer"))
        await writer_socket.until(lambda: writer_socket.of(name, h.MSG_SYNC))
        await viewer_socket.until(lambda: viewer_socket.of(name, h.MSG_SYNC))
        room = rooms.rooms[LESSON]
        client: Doc[Any] = Doc()
        client.apply_update(room.doc.get_update())

        viewer_session.receive(_update(name, _edit(client, "VIEWER ")))
        await viewer_socket.until(lambda: viewer_socket.of(name, h.MSG_SYNC_STATUS))
        assert viewer_socket.of(name, h.MSG_SYNC_STATUS)[-1].body == b"\x00"
        assert str(room.doc.get("body", type=Text)) == "Body"
        assert not any(b"VIEWER" in m.body for m in writer_socket.messages)

        before = room.doc.get_update()
        fresh: Doc[Any] = Doc()
        fresh.apply_update(before)
        a, b = _edit(fresh, "A "), _edit(fresh, "B ")
        writer_session.receive(_update(name, a))
        writer_session.receive(_update(name, b))
        assert str(room.doc.get("body", type=Text)) == "B A Body"
        await writer_socket.until(lambda: len(writer_socket.of(name, h.MSG_SYNC_STATUS)) == 2)
        assert [m.body for m in writer_socket.of(name, h.MSG_SYNC_STATUS)] == [b"\x01", b"\x01"]
        # acknowledged once both are in the log, each once (the two may share a row)
        stored = [u.update for u in store.appended]
        assert not overlaps(stored) and struct_count(stored) == struct_count([a, b])
        # The viewer still receives live edits (the two of one loop turn merged into one
        # update), and its step 2 of what it has is acked as applied.
        await viewer_socket.until(lambda: _text(viewer_socket.of(name, h.MSG_SYNC), before) == "B A Body")
        viewer_session.receive(h.encode(name, h.MSG_SYNC, p.step2_frame(room.doc.get_update())[1:]))
        await viewer_socket.until(lambda: viewer_socket.of(name, h.MSG_SYNC_STATUS)[-1].body == b"\x01")
        writer_session.finish()
        viewer_session.finish()

    await _with_rooms(test)


async def test_closing_one_document_leaves_the_others_open() -> None:
    async def test(rooms: RoomManager, store: MemoryStore) -> None:
        session, socket, first, second = await _two_documents_open(rooms)
        session.receive(h.encode(first, h.MSG_CLOSE))
        assert rooms.rooms[LESSON].peers == []
        other = rooms.rooms[OTHER]
        assert len(other.peers) == 1
        client: Doc[Any] = Doc()
        client.apply_update(other.doc.get_update())
        session.receive(_update(second, _edit(client, "still ")))
        assert str(other.doc.get("body", type=Text)) == "still Body"
        await socket.until(lambda: socket.of(second, h.MSG_SYNC_STATUS))
        # A room ending its peer (an update over the body limit) closes that document only.
        session.receive(_update(second, _edit(client, "x" * 200_001)))
        closes = socket.of(second, h.MSG_CLOSE)
        assert h.read_var_string(closes[0].body, 0)[0].startswith("4413: ")
        late: Doc[Any] = Doc()
        late.apply_update(other.doc.get_update())
        session.receive(_update(second, _edit(late, "late ")))  # before it has left the room
        assert str(other.doc.get("body", type=Text)) == "still Body"
        await socket.until(lambda: not other.peers)
        assert socket.close_code is None
        # Stateless and unknown types of a document are accepted, never fatal.
        session.receive(h.auth_frame(first, "writer"))
        await socket.until(lambda: len(socket.of(first, h.MSG_AUTH)) == 2)
        session.receive(h.encode(first, h.MSG_STATELESS, h.write_var_string("{}")))
        session.receive(h.encode(first, 42))
        session.receive(h.PONG_FRAME)
        assert socket.close_code is None
        session.finish()

    await _with_rooms(test)


async def test_bad_frames_and_limits() -> None:
    async def test(rooms: RoomManager, store: MemoryStore) -> None:
        session, socket = _session(rooms)
        session.receive(b"\x05ab")  # an address longer than the frame
        await socket.until(lambda: socket.close_code)
        assert socket.close_code == h.CLOSE_RESET
        session.finish()

        # Too much waiting for an auth that never comes: reset.
        session, socket = _session(rooms)
        name = "lesson:" + LESSON
        chunk = h.encode(name, h.MSG_AWARENESS, b"\x00" * 60_000)
        for _ in range(h.MAX_PENDING_BYTES // len(chunk) + 1):
            session.receive(chunk)
        await socket.until(lambda: socket.close_code)
        assert socket.close_code == h.CLOSE_RESET
        session.finish()

        # At most MAX_DOCUMENTS documents per socket: the next one is refused, 4429.
        session, socket = _session(rooms)
        for index in range(h.MAX_DOCUMENTS):
            session.receive(h.auth_frame(f"lesson:{uuid.UUID(int=index)}", "slow"))
        session.receive(h.auth_frame("lesson:" + LESSON, "writer"))
        await socket.until(lambda: socket.messages)
        assert h.read_var_string(socket.messages[0].body, 1)[0].startswith("4429: ")
        assert socket.close_code is None
        session.finish()  # cancels the pending authentications

    await _with_rooms(test)


async def test_what_authorize_notes_in_the_scope_is_the_sockets_once() -> None:
    """The server counts a socket against its user by noting it in the scope (SocketCounts): over
    many documents that authenticate at once, the socket is counted once, on its own scope."""
    taken: list[str] = []

    async def counting(scope: Scope, lesson_id: str) -> Grant:
        if "counted" not in scope:
            await asyncio.sleep(0.01)  # the other documents' admissions are under way meanwhile
            taken.append(lesson_id)
            scope["counted"] = "writer"
        return Grant("writer", can_write=True)

    store = MemoryStore()
    rooms = RoomManager(store, counting, _recheck, flush_interval=0.01)  # type: ignore[arg-type]
    await rooms.start()
    try:
        socket = Socket()
        scope: dict[str, Any] = {"type": "websocket", "headers": []}
        session = h.Session(rooms, scope, socket.send)
        names = [f"lesson:{uuid.UUID(int=index + 1)}" for index in range(3)]
        for name in names:
            session.receive(h.auth_frame(name, "writer"))
        await socket.until(lambda: all(socket.of(name, h.MSG_SYNC) for name in names))
        assert len(taken) == 1 and scope["counted"] == "writer"
        session.finish()
    finally:
        await rooms.stop()


async def test_a_finished_socket_is_freed_without_the_cycle_collector() -> None:
    """A socket's documents, links and sender are freed by reference counting once it is done:
    no cycle (a document and its link pointed at each other) holds them, with the socket's
    protocol and its read buffer, until a full pass of the collector (which runs rarely: the
    server's thresholds, server/app.py)."""
    import gc
    import weakref

    async def test(rooms: RoomManager, store: MemoryStore) -> None:
        session, socket, first, second = await _two_documents_open(rooms)
        client: Doc[Any] = Doc()
        client.apply_update(rooms.rooms[OTHER].doc.get_update())
        session.receive(_update(second, _edit(client, "kept ")))
        await socket.until(lambda: socket.of(second, h.MSG_SYNC_STATUS))
        session.receive(h.encode(first, h.MSG_CLOSE))  # one closed by the client, one by the end
        documents = [weakref.ref(d) for d in session.documents.values()]
        links = [weakref.ref(d.link) for d in session.documents.values() if d.link is not None]
        gone = [weakref.ref(session), weakref.ref(session.sender), *documents, *links]
        assert len(gone) == 2 + 1 + 1
        gc.disable()  # what is freed below is freed by reference counting alone
        try:
            session.finish()
            del session
            await asyncio.sleep(0.05)  # callbacks the close scheduled have run
            alive = [ref() for ref in gone if ref() is not None]
            assert not alive, f"held by a cycle: {[type(obj).__name__ for obj in alive]}"
        finally:
            gc.enable()

    await _with_rooms(test)
