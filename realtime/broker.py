"""The broker: per-channel event history with increasing ids, plus live fan-out to listeners.

Two backends implement :class:`Broker`: :class:`realtime.memory_broker.MemoryBroker` (one
process) and :class:`realtime.redis_broker.RedisBroker` (many nodes on one Redis).

Event ids are integers, per channel, consecutive (1, 2, 3 …). The server's outbox drain assigns
them durably in PostgreSQL and passes them to :meth:`Broker.publish`, which is idempotent per id:
publishing an id the channel already has is a no-op. That is what makes "a crash or a Redis
outage loses or duplicates nothing" possible. Ephemeral signals (typing) have no id and no history.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

DEFAULT_HISTORY = 1000
DEFAULT_HISTORY_SECONDS = 24 * 3600
DEFAULT_HISTORY_CAP = 100_000


@dataclass(frozen=True)
class Event:
    """One event of a channel. ``data_json`` is the JSON text of ``data`` (serialised once)."""

    channel: str
    id: int | None  # None: ephemeral signal (typing), never stored or replayed
    event: str
    data_json: str

    @property
    def data(self) -> Any:
        return json.loads(self.data_json)


@dataclass(frozen=True)
class Reset:
    """The history a reader asked for is gone; the reader must refetch (§7 ``reset``).

    ``last_id`` is the channel's newest id when the reset was noticed.
    """

    channel: str
    last_id: int = 0


# A live listener is called on the event loop, in id order and without gaps, with each event of
# a channel it subscribed to, or with a Reset when the broker could not fill a gap.
Listener = Callable[[Event | Reset], None]


@dataclass
class HistoryPolicy:
    """Keep at least ``keep`` events per channel, and everything younger than ``max_age_s``,
    but never more than ``cap`` events."""

    keep: int = DEFAULT_HISTORY
    max_age_s: float = DEFAULT_HISTORY_SECONDS
    cap: int = DEFAULT_HISTORY_CAP


def to_json(data: dict[str, Any] | str) -> str:
    if isinstance(data, str):
        return data
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str)


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Listeners:
    """The local listeners of each channel."""

    by_channel: dict[str, set[Listener]] = field(default_factory=dict)

    def add(self, channel: str, listener: Listener) -> bool:
        """Add; True when it is the channel's first local listener."""
        found = self.by_channel.setdefault(channel, set())
        first = not found
        found.add(listener)
        return first

    def remove(self, channel: str, listener: Listener) -> bool:
        """Remove; True when the channel has no local listener left."""
        found = self.by_channel.get(channel)
        if found is None:
            return False
        found.discard(listener)
        if not found:
            del self.by_channel[channel]
            return True
        return False

    def deliver(self, channel: str, item: Event | Reset) -> None:
        for listener in tuple(self.by_channel.get(channel, ())):
            listener(item)


class Broker(ABC):
    """History and live fan-out of channel events."""

    policy: HistoryPolicy

    async def start(self) -> None:
        """Connect; called once before use."""
        return None

    async def close(self) -> None:
        """Disconnect and stop background work."""
        return None

    @abstractmethod
    async def publish(self, channel: str, event: str, data: dict[str, Any] | str, *,
                      id: int | None = None) -> int:
        """Append an event and fan it out; returns its id.

        With ``id`` (the durable id from the outbox) it is idempotent: an id the channel already
        has (``id <= last_id``) is not appended again. Without, the broker assigns ``last_id + 1``.
        """

    @abstractmethod
    async def signal(self, channel: str, event: str, data: dict[str, Any]) -> None:
        """Fan out an ephemeral event (no id, not stored) to the channel's live listeners."""

    @abstractmethod
    async def read_since(self, channel: str, since: int, *, limit: int | None = None) -> list[Event] | Reset:
        """The events after ``since`` in id order (at most ``limit``), or :class:`Reset` when some
        of them are no longer kept."""

    @abstractmethod
    async def last_id(self, channel: str) -> int:
        """The channel's newest event id; 0 for a channel without events."""

    @abstractmethod
    async def subscribe(self, channel: str, listener: Listener) -> None:
        """Start calling ``listener`` with the channel's live events. Once this returns, every
        event with an id above the channel's ``last_id()`` reaches the listener."""

    @abstractmethod
    async def unsubscribe(self, channel: str, listener: Listener) -> None:
        """Stop calling ``listener`` for the channel."""

    @abstractmethod
    async def ping(self) -> None:
        """Raise when the backend is unreachable."""

    @abstractmethod
    async def needs_restore(self) -> bool:
        """True when the broker lost its history (fresh process, Redis restarted empty)."""

    @abstractmethod
    async def mark_restored(self) -> None:
        """Called after the owner re-published its retained history with :meth:`restore`."""

    @abstractmethod
    async def restore(self, channel: str, events: list[tuple[int, str, str, int]], last_id: int) -> None:
        """Put back history without fanning it out: ``events`` are ``(id, event, data_json,
        created_ms)`` in id order; ``last_id`` is the channel's durable newest id."""
