"""The Hocuspocus protocol: ``WS /collab``, many lesson documents over one socket.

What ``@hocuspocus/provider`` (v3/v4, the version npm serves) speaks, read from
``ueberdosis/hocuspocus`` (packages ``common``, ``server``, ``provider``). Every message starts
with a varstring address, the document name (``lesson:<lesson_id>``; a provider with
``sessionAwareness`` appends ``\\0<session id>``, kept as is in every answer), then a varuint
type: 0 sync (a y-protocols sync message), 1 awareness, 2 auth, 3 query-awareness, 4 sync reply
(sync that asks no step 1 back), 5 stateless (varstring), 6 broadcast-stateless (server-internal),
7 close, 8 sync status (varuint 1 applied / 0 not), 9 ping and 10 pong (one byte, no address).

Each document is its own :class:`~collab.room.Link` over the rooms' seam (the y-websocket
connection's sibling, :mod:`collab.connection`): ``admit`` / ``join`` / ``receiver.receive`` /
``leave`` on the :class:`~collab.manager.RoomManager`, so rooms, access, limits, persistence,
relay, versions and suggestions are the same. Per document:

- Its messages wait (bounded: :data:`MAX_PENDING_BYTES`, :data:`MAX_PENDING_MESSAGES` per socket)
  until its auth message arrives; the token in it is checked by the server's ``authorize`` (as if
  sent as ``Authorization: Bearer``; an empty token falls back to what the socket itself carries)
  with the room's access rules. Granted: ``Authenticated`` with scope ``read-write`` (author,
  editors, admins) or ``readonly`` (viewers), then the room's sync step 1 and awareness, then the
  queued messages. Refused: ``PermissionDenied`` whose reason is ``"<close code>: <reason>"``
  (4401 bad/expired token, 4403 no right to edit, 4404 no such lesson or a name that is not
  ``lesson:<uuid>``, 4429 over :data:`MAX_DOCUMENTS` on this socket); the provider fires
  ``onAuthenticationFailed``; the socket stays open. Authentication of one document never holds
  up the messages of the others.
- A writer's sync step 2 and updates go to the room; each is acknowledged with a sync status 1
  once it is committed to PostgreSQL (the same promise as the y-websocket "saved" answer: the
  provider's ``synced`` / ``unsyncedChanges`` then mean "saved"). A viewer's are never applied nor
  relayed; answered with sync status 0 (1 for a step 2 that holds nothing the room lacks, as
  Hocuspocus does, so a viewer's provider reports synced).
- Close (7) from the provider leaves that room only. A room that ends one peer (access revoked,
  an update over a text limit, storage unavailable) sends that document a close message whose
  reason is ``"<close code>: <reason>"``; going away (1001, 1012) and too slow (4008) close the
  socket, as on ``/collab/lessons/{id}``.
- Stateless messages are accepted and not forwarded (Hocuspocus without an ``onStateless`` hook
  does the same); broadcast-stateless from a client is dropped.

The socket: one :class:`~collab.sender.Sender` (the 16 MiB bound on what waits for the client,
closed 4008 when over); frames over 2 MiB are closed 1009 by the server (as y-websocket's); a
frame without a readable address and type is closed :data:`CLOSE_RESET` (4205, Hocuspocus's
"Reset Connection"), as is breaking the pending-message bounds; a socket that authenticates no
document within :data:`AUTH_DEADLINE_S` is closed 4401. A ping goes out every
:data:`PING_INTERVAL_S` (the provider closes a socket it hears nothing from for 30 s; Hocuspocus
keeps it alive by echoing each client's own awareness, which the rooms do not).
Depends on :mod:`collab.manager` (its API), :mod:`collab.sender`, :mod:`collab.protocol` and
:mod:`wire.websocket`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from pycrdt import get_state as update_state_vector

from collab import protocol as p
from collab.access import Denied, Grant, Scope
from collab.connection import Pacing
from collab.manager import CLOSE_SERVICE_RESTART, RoomManager
from collab.room import Peer, Room, lesson_key
from collab.sender import Sender
from collab.store import LessonGone
from collab.throttle import ReceiveBudget
from wire import grid
from wire.websocket import (
    CLOSE_GOING_AWAY,
    CLOSE_INTERNAL,
    CLOSE_NOT_FOUND,
    CLOSE_TOO_MANY,
    CLOSE_TOO_SLOW,
    CLOSE_UNAUTHORIZED,
    encode_frame,
)

log = logging.getLogger("scriptorium.collab")

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# Message types (packages/server/src/types.ts).
MSG_SYNC = 0
MSG_AWARENESS = 1
MSG_AUTH = 2
MSG_QUERY_AWARENESS = 3
MSG_SYNC_REPLY = 4
MSG_STATELESS = 5
MSG_BROADCAST_STATELESS = 6
MSG_CLOSE = 7
MSG_SYNC_STATUS = 8
MSG_PING = 9
MSG_PONG = 10

# Auth sub-types (packages/common/src/auth.ts).
AUTH_TOKEN = 0
AUTH_PERMISSION_DENIED = 1
AUTH_AUTHENTICATED = 2

SCOPE_READ_WRITE = "read-write"
SCOPE_READONLY = "readonly"

DOCUMENT_PREFIX = "lesson:"
CLOSE_RESET = 4205  # Hocuspocus's ResetConnection: a frame that cannot be read, a pending bound broken
MAX_DOCUMENTS = 100  # documents open or authenticating on one socket
MAX_PENDING_BYTES = 4 * 1024 * 1024  # messages waiting for their document's auth, per socket
MAX_PENDING_MESSAGES = 1000
DENIED_KEPT = 100  # refused document names whose late messages are dropped without a trace
PING_INTERVAL_S = 10.0
AUTH_DEADLINE_S = 30.0
# Closes that end the whole socket, not one document: the node goes away, the reader is too slow.
SOCKET_CLOSES = frozenset({CLOSE_GOING_AWAY, CLOSE_SERVICE_RESTART, CLOSE_TOO_SLOW})
PING_FRAME = bytes((MSG_PING,))
PONG_FRAME = bytes((MSG_PONG,))


class HocuspocusError(ValueError):
    """A frame that does not follow the Hocuspocus protocol."""


# --- codec ----------------------------------------------------------------------------------


def write_var_string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return p.write_var_uint(len(raw)) + raw


def read_var_string(data: bytes, pos: int) -> tuple[str, int]:
    raw, pos = p.read_var_bytes(data, pos)
    try:
        return raw.decode("utf-8"), pos
    except UnicodeDecodeError:
        raise HocuspocusError("a string that is not UTF-8") from None


@dataclass(frozen=True)
class Message:
    """A decoded message: its address (document name, maybe with ``\\0session``), type and the
    bytes after the type."""

    address: str
    type: int
    body: bytes

    @property
    def document(self) -> str:
        return self.address.split("\0", 1)[0]


def decode(data: bytes) -> Message:
    """Split a frame into address, type and body; :class:`HocuspocusError` when it cannot."""
    try:
        address, pos = read_var_string(data, 0)
        kind, pos = p.read_var_uint(data, pos)
    except p.ProtocolError as exc:
        raise HocuspocusError(str(exc)) from None
    return Message(address, kind, data[pos:])


def encode(address: str, kind: int, body: bytes = b"") -> bytes:
    return write_var_string(address) + p.write_var_uint(kind) + body


def auth_frame(address: str, token: str) -> bytes:
    """What the provider sends: auth, token, then its version (read and ignored here)."""
    return encode(address, MSG_AUTH, p.write_var_uint(AUTH_TOKEN) + write_var_string(token))


def authenticated_frame(address: str, read_only: bool) -> bytes:
    scope = SCOPE_READONLY if read_only else SCOPE_READ_WRITE
    return encode(address, MSG_AUTH, p.write_var_uint(AUTH_AUTHENTICATED) + write_var_string(scope))


def permission_denied_frame(address: str, reason: str) -> bytes:
    return encode(address, MSG_AUTH, p.write_var_uint(AUTH_PERMISSION_DENIED) + write_var_string(reason))


def sync_status_frame(address: str, applied: bool) -> bytes:
    return encode(address, MSG_SYNC_STATUS, p.write_var_uint(1 if applied else 0))


def close_frame(address: str, reason: str) -> bytes:
    return encode(address, MSG_CLOSE, write_var_string(reason))


def read_token(body: bytes) -> str:
    """The token of an auth message's body (after the type); HocuspocusError if not a token."""
    try:
        sub, pos = p.read_var_uint(body, 0)
        if sub != AUTH_TOKEN:
            raise HocuspocusError(f"auth message of sub-type {sub} from a client")
        token, _ = read_var_string(body, pos)
    except p.ProtocolError as exc:
        raise HocuspocusError(str(exc)) from None
    return token


def lesson_of(document: str) -> str:
    """The lesson id a document name names; :class:`~collab.access.Denied` 4404 otherwise."""
    if not document.startswith(DOCUMENT_PREFIX):
        raise Denied(CLOSE_NOT_FOUND, "Unknown document: documents are named lesson:<lesson id>.")
    try:
        return lesson_key(document[len(DOCUMENT_PREFIX):])
    except ValueError:
        raise Denied(CLOSE_NOT_FOUND, "No such lesson.") from None


def _decode_state_vector(state_vector: bytes) -> dict[int, int]:
    count, pos = p.read_var_uint(state_vector, 0)
    clocks: dict[int, int] = {}
    for _ in range(count):
        client, pos = p.read_var_uint(state_vector, pos)
        clocks[client], pos = p.read_var_uint(state_vector, pos)
    return clocks


def holds_nothing_new(room: Room, update: bytes) -> bool:
    """Whether every struct of ``update`` is already in the room (its deletions are not looked
    at): a viewer's sync step 2 of what it received is acknowledged as applied."""
    try:
        theirs = _decode_state_vector(update_state_vector(update))
        ours = _decode_state_vector(room.doc.get_state())
    except Exception:
        return False
    return all(ours.get(client, 0) >= clock for client, clock in theirs.items())


def denial_reason(denied: Denied) -> str:
    return f"{denied.code}: {denied.reason}" if denied.reason else str(denied.code)


# --- frames out -----------------------------------------------------------------------------


class _Prefixed:
    """The last frame addressed to one document name, framed once for every socket that has it
    open: a broadcast pushes the same frame object to every peer."""

    __slots__ = ("address", "framed", "prefix", "source", "users", "wire")

    def __init__(self, address: str) -> None:
        self.address = address
        self.prefix = write_var_string(address)
        self.source: bytes | None = None
        self.framed = b""
        self.wire = b""
        self.users = 0

    def frame(self, frame: bytes) -> tuple[bytes, bytes]:
        if frame is not self.source:
            self.source = frame
            self.framed = self.prefix + frame
            self.wire = encode_frame(self.framed)
        return self.framed, self.wire


_prefixes: dict[str, _Prefixed] = {}


def _take_prefix(address: str) -> _Prefixed:
    found = _prefixes.get(address)
    if found is None:
        found = _prefixes[address] = _Prefixed(address)
    found.users += 1
    return found


def _drop_prefix(found: _Prefixed) -> None:
    found.users -= 1
    if found.users <= 0 and _prefixes.get(found.address) is found:
        del _prefixes[found.address]


@dataclass(eq=False)
class Document:
    """One document of a socket: waiting for auth, or open in a room."""

    address: str
    pending: list[bytes] = field(default_factory=list)
    pending_bytes: int = 0
    authorizing: asyncio.Task[None] | None = None
    link: DocumentLink | None = None
    room: Room | None = None
    peer: Peer | None = None
    budget: ReceiveBudget | None = None
    asked: int = 0  # updates received from the client (each asks "saved?" with this number)
    acked: int = 0  # of those, acknowledged with a sync status

    @property
    def open(self) -> bool:
        return self.peer is not None


class DocumentLink:
    """The :class:`~collab.room.Link` of one document: y-protocol frames addressed to it on the
    socket's shared sender; the rooms' "saved" answers become sync status acknowledgements."""

    def __init__(self, session: Session, document: Document) -> None:
        self.session = session
        self.document = document
        self.closed = False
        self._prefix = _take_prefix(document.address)

    def push(self, frame: bytes, message: dict[str, Any] | None = None, wire: bytes | None = None) -> None:
        if self.closed:
            return
        sender = self.session.sender
        if frame and frame[0] == p.MSG_SAVED:
            nonce, _ = p.read_var_uint(frame, 1)
            document = self.document
            if nonce > document.acked:
                ack = sync_status_frame(document.address, True)
                for _ in range(nonce - document.acked):
                    sender.push(ack)
                document.acked = nonce
            return
        framed, framed_wire = self._prefix.frame(frame)
        sender.push(framed, None, framed_wire)

    def close(self, code: int, reason: str = "") -> None:
        if self.closed:
            return
        if code in SOCKET_CLOSES:
            self.session.close(code, reason)
            return
        self.session.sender.push(close_frame(self.document.address, f"{code}: {reason}" if reason else str(code)))
        self.detach()
        # Leave the room after the caller (a room's loop over its peers) is done.
        asyncio.get_running_loop().call_soon(self.session.drop, self.document)

    def detach(self) -> None:
        if not self.closed:
            self.closed = True
            _drop_prefix(self._prefix)


# --- one socket -----------------------------------------------------------------------------


class Session:
    """One ``WS /collab`` socket: its documents, the shared sender, auth and dispatch."""

    def __init__(self, rooms: RoomManager, scope: Scope, send: Send) -> None:
        self.rooms = rooms
        self.scope = scope
        self.sender = Sender(send, max_queued=rooms.max_queued, coalescer=rooms.coalescer)
        self.documents: dict[str, Document] = {}
        self.denied: OrderedDict[str, None] = OrderedDict()
        self.pending_bytes = 0
        self.pending_messages = 0
        self.opened_at = time.monotonic()
        self.authenticated = False
        self._first_admit = asyncio.Lock()
        self._ping: grid.Timer | None = None

    # -- lifecycle --

    def start(self) -> None:
        self._ping = grid.call_later(PING_INTERVAL_S, self._tick)

    def _tick(self) -> None:
        if self.sender.closed:
            return
        if not self.authenticated and time.monotonic() - self.opened_at >= AUTH_DEADLINE_S:
            self.close(CLOSE_UNAUTHORIZED, "No document was authenticated in time.")
            return
        self.sender.push(PING_FRAME)
        self._ping = grid.call_later(PING_INTERVAL_S, self._tick)

    def close(self, code: int, reason: str = "") -> None:
        self.sender.close(code, reason)

    def finish(self) -> None:
        """The socket is gone: every document leaves its room, pending auth is cancelled."""
        self.sender.closed = True
        if self._ping is not None:
            self._ping.cancel()
        for document in list(self.documents.values()):
            self.drop(document)

    def drop(self, document: Document) -> None:
        """Forget one document: out of its room (if in one), its pending messages dropped."""
        if self.documents.get(document.address) is document:
            del self.documents[document.address]
        self._unqueue(document)
        task = document.authorizing
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
        if document.link is not None:
            document.link.detach()
            # A document and its link point at each other: left as a cycle, they (and through
            # the link the session, its sender and the socket's protocol with its read buffer)
            # would wait for a full pass of the collector, which the server makes rare.
            document.link = None
        if document.room is not None and document.peer is not None:
            room, peer = document.room, document.peer
            document.room = document.peer = None
            self.rooms.leave(room, peer)
            self.rooms.receiver.release_budget(peer.grant.user_id)

    def _unqueue(self, document: Document) -> None:
        self.pending_bytes -= document.pending_bytes
        self.pending_messages -= len(document.pending)
        document.pending = []
        document.pending_bytes = 0

    # -- frames in --

    def receive(self, data: bytes) -> ReceiveBudget | None:
        """Handle one frame; the receive budget it is charged to (None: not charged)."""
        if len(data) == 1 and data[0] in (MSG_PONG, MSG_PING):
            if data[0] == MSG_PING:
                self.sender.push(PONG_FRAME)
            return None
        try:
            message = decode(data)
        except HocuspocusError as exc:
            log.info("closing a Hocuspocus socket after a bad frame: %s", exc)
            self.close(CLOSE_RESET, "Reset Connection")
            return None
        document = self.documents.get(message.address)
        if document is not None and document.open:
            self.dispatch(document, message)
            return document.budget
        if message.type == MSG_AUTH:
            try:
                token = read_token(message.body)
            except HocuspocusError as exc:
                log.info("dropped a bad Hocuspocus auth message: %s", exc)
                return None
            self.authenticate(document, message.address, token)
            return None
        if document is None:
            if message.address in self.denied or message.type == MSG_CLOSE:
                return None  # late messages of a refused document, or closing one never opened
            document = self._new_document(message.address)
            if document is None:
                return None
        if message.type == MSG_CLOSE:
            self.drop(document)
            return None
        # Waiting for its auth: queued, within the socket's bounds.
        if (self.pending_bytes + len(data) > MAX_PENDING_BYTES
                or self.pending_messages + 1 > MAX_PENDING_MESSAGES):
            log.info("closing a Hocuspocus socket: too much waits for authentication")
            self.close(CLOSE_RESET, "Reset Connection")
            return None
        document.pending.append(data)
        document.pending_bytes += len(data)
        self.pending_bytes += len(data)
        self.pending_messages += 1
        return None

    def _new_document(self, address: str) -> Document | None:
        if len(self.documents) >= MAX_DOCUMENTS:
            return None
        document = self.documents[address] = Document(address)
        return document

    def authenticate(self, document: Document | None, address: str, token: str) -> None:
        if document is not None and (document.open or document.authorizing is not None):
            return  # already authenticated (or being): Hocuspocus ignores it too
        self.denied.pop(address, None)
        if document is None:
            document = self._new_document(address)
            if document is None:
                self._deny(address, Denied(CLOSE_TOO_MANY, f"At most {MAX_DOCUMENTS} documents per socket."))
                return
        document.authorizing = asyncio.ensure_future(self._authorize(document, token))

    def _deny(self, address: str, denied: Denied) -> None:
        self.sender.push(permission_denied_frame(address, denial_reason(denied)))
        self.denied[address] = None
        while len(self.denied) > DENIED_KEPT:
            self.denied.popitem(last=False)

    def _document_scope(self, token: str) -> dict[str, Any]:
        scope = dict(self.scope)
        if token:
            headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"authorization"]
            headers.append((b"authorization", f"Bearer {token}".encode("latin-1", "replace")))
            scope["headers"] = headers
        return scope

    async def _admit(self, token: str, lesson_id: str) -> tuple[Grant, Room]:
        scope = self._document_scope(token)
        if self.authenticated:
            return await self.rooms.admit(scope, lesson_id)
        # Until one document is in, admissions take turns: what ``authorize`` notes in the scope
        # (e.g. the server counting this socket against its user) is copied to the socket's
        # scope, once.
        async with self._first_admit:
            if self.authenticated:  # another document got in meanwhile: copy what it noted
                return await self.rooms.admit(self._document_scope(token), lesson_id)
            admitted = await self.rooms.admit(scope, lesson_id)
            if isinstance(self.scope, MutableMapping):
                for key, value in scope.items():
                    if key not in self.scope:
                        self.scope[key] = value
            self.authenticated = True
            return admitted

    async def _authorize(self, document: Document, token: str) -> None:
        address = document.address
        try:
            lesson_id = lesson_of(document_name(address))
            grant, room = await self._admit(token, lesson_id)
        except Denied as denied:
            self._refused(document, denied)
            return
        except LessonGone:
            self._refused(document, Denied(CLOSE_NOT_FOUND, "No such lesson."))
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("opening a collab room failed", extra={"document": address})
            self._refused(document, Denied(CLOSE_INTERNAL, "The server failed."))
            return
        finally:
            document.authorizing = None
        if self.sender.closed or self.documents.get(address) is not document:
            return  # the socket went, or the provider closed the document meanwhile
        self.sender.push(authenticated_frame(address, read_only=not grant.can_write))
        link = document.link = DocumentLink(self, document)
        room, peer = await self.rooms.join(room, grant, link)
        if self.sender.closed or self.documents.get(address) is not document:
            self.rooms.leave(room, peer)
            link.detach()
            return
        document.room, document.peer = room, peer
        document.budget = self.rooms.receiver.user_budget(grant.user_id)
        queued = document.pending
        self._unqueue(document)
        for data in queued:
            if link.closed or self.sender.closed:
                break
            self.dispatch(document, decode(data))

    def _refused(self, document: Document, denied: Denied) -> None:
        if self.documents.get(document.address) is document:
            self.drop(document)
        if not self.sender.closed:
            self._deny(document.address, denied)

    def dispatch(self, document: Document, message: Message) -> None:
        """One message of an open document."""
        room, peer = document.room, document.peer
        assert room is not None and peer is not None
        if peer.sender.closed:  # closed by its room (it leaves at the next turn): moot
            return
        kind = message.type
        receiver = self.rooms.receiver
        if kind in (MSG_SYNC, MSG_SYNC_REPLY):
            frame = bytes((p.MSG_SYNC,)) + message.body
            try:
                parsed = p.parse_frame(frame)
            except p.ProtocolError as exc:
                log.info("dropped a bad Hocuspocus sync message: %s", exc)
                return
            if parsed.sync in (p.SYNC_STEP2, p.SYNC_UPDATE):
                if not peer.can_write:  # read-only: never applied nor relayed
                    applied = parsed.sync == p.SYNC_STEP2 and holds_nothing_new(room, parsed.payload)
                    self.sender.push(sync_status_frame(document.address, applied))
                    return
                receiver.receive(room, peer, frame)
                document.asked += 1
                receiver.receive(room, peer, p.query_saved_frame(document.asked))
                return
            receiver.receive(room, peer, frame)
        elif kind == MSG_AWARENESS:
            receiver.receive(room, peer, bytes((p.MSG_AWARENESS,)) + message.body)
        elif kind == MSG_QUERY_AWARENESS:
            receiver.receive(room, peer, bytes((p.MSG_QUERY_AWARENESS,)))
        elif kind == MSG_CLOSE:
            self.drop(document)
        elif kind in (MSG_STATELESS, MSG_AUTH):
            return  # stateless: no hook consumes it; auth: already authenticated
        else:
            log.info("dropped a Hocuspocus message of type %d", kind)


def document_name(address: str) -> str:
    return address.split("\0", 1)[0]


async def serve(rooms: RoomManager, scope: Scope, receive: Receive, send: Send) -> None:
    """Serve one ``WS /collab`` connection (an ASGI app body)."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    session = Session(rooms, scope, send)
    session.start()
    pacing = Pacing()
    try:
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.receive":
                data = message.get("bytes") or b""
                if not data or session.sender.closed:
                    continue
                started = time.perf_counter()
                budget = session.receive(data)
                spent = time.perf_counter() - started
                wait = 0.0
                if budget is not None:
                    wait = budget.spend(rooms.receiver.frame_cost(data, spent), time.monotonic())
                await pacing.after(spent, wait)
            elif kind == "websocket.disconnect":
                break
    finally:
        session.finish()
