"""In-process broker: one node only (the embedded default without ``REDIS_URL``)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from realtime.broker import Broker, Event, HistoryPolicy, Listener, Listeners, Reset, now_ms, to_json


@dataclass
class _Channel:
    last_id: int = 0
    events: deque[tuple[Event, int]] = field(default_factory=deque)  # (event, created ms)


class MemoryBroker(Broker):
    """History in a deque per channel; live listeners called synchronously on publish."""

    def __init__(self, policy: HistoryPolicy | None = None) -> None:
        self.policy = policy or HistoryPolicy()
        self._channels: dict[str, _Channel] = {}
        self._listeners = Listeners()
        self._restored = False

    def _channel(self, channel: str) -> _Channel:
        found = self._channels.get(channel)
        if found is None:
            found = self._channels[channel] = _Channel()
        return found

    def _append(self, state: _Channel, event: Event, created_ms: int) -> None:
        assert event.id is not None
        state.events.append((event, created_ms))
        state.last_id = event.id
        self._trim(state, now_ms())

    def _trim(self, state: _Channel, now: int) -> None:
        policy = self.policy
        cutoff = now - int(policy.max_age_s * 1000)
        while len(state.events) > policy.cap or (
            len(state.events) > policy.keep and state.events[0][1] <= cutoff
        ):
            state.events.popleft()

    async def publish(self, channel: str, event: str, data: dict[str, Any] | str, *,
                      id: int | None = None) -> int:
        state = self._channel(channel)
        if id is None:
            id = state.last_id + 1
        elif id <= state.last_id:
            return id
        item = Event(channel, id, event, to_json(data))
        self._append(state, item, now_ms())
        self._listeners.deliver(channel, item)
        return id

    async def signal(self, channel: str, event: str, data: dict[str, Any]) -> None:
        self._listeners.deliver(channel, Event(channel, None, event, to_json(data)))

    async def read_since(self, channel: str, since: int, *, limit: int | None = None) -> list[Event] | Reset:
        state = self._channels.get(channel)
        if state is None or since >= state.last_id:
            return []
        first = state.events[0][0].id if state.events else state.last_id + 1
        assert first is not None
        tail = state.events[-1][0].id if state.events else 0
        assert tail is not None
        if since + 1 < first or tail < state.last_id:
            return Reset(channel, state.last_id)
        # ids are consecutive, so the event after ``since`` sits at a known offset
        start = since + 1 - first
        stop = len(state.events) if limit is None else min(len(state.events), start + limit)
        return [state.events[i][0] for i in range(start, stop)]

    async def last_id(self, channel: str) -> int:
        state = self._channels.get(channel)
        return state.last_id if state else 0

    async def subscribe(self, channel: str, listener: Listener) -> None:
        self._listeners.add(channel, listener)

    async def unsubscribe(self, channel: str, listener: Listener) -> None:
        self._listeners.remove(channel, listener)

    async def ping(self) -> None:
        return None

    async def needs_restore(self) -> bool:
        return not self._restored

    async def mark_restored(self) -> None:
        self._restored = True

    async def restore(self, channel: str, events: list[tuple[int, str, str, int]], last_id: int) -> None:
        state = self._channel(channel)
        for id, event, data_json, created_ms in events:
            if id > state.last_id:
                self._append(state, Event(channel, id, event, data_json), created_ms)
        if last_id > state.last_id:
            state.last_id = last_id
