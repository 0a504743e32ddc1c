"""Live co-editing of lessons over the y-websocket protocol (never imports ``server``).

Module map, one job each; every arrow is "imports", and no module imports one above it in the
list except where noted (``receiver`` reaches the manager only at run time, through the object it
is given):

- :mod:`collab.protocol`: the y-protocol messages (sync, awareness, query-saved): parse and encode.
- :mod:`collab.access`: :class:`~collab.access.Grant`, :class:`~collab.access.Denied` and the
  periodic access re-check of a room's users (the policy itself is the server's).
- :mod:`collab.room`: one lesson's document and its peers (:class:`~collab.room.Room`,
  :class:`~collab.room.Peer`), the :class:`~collab.room.Link` a peer's connection implements,
  the document checks (malformed or poisoning updates) and text/size limits. -> protocol,
  access, textsize, throttle, wire.
- :mod:`collab.awareness`: who owns which awareness client id, fan-out within a budget, other
  nodes' entries. -> room, relay, protocol, throttle.
- :mod:`collab.persistence`: the batched update log, "saved" answers, materialisation, versions,
  compaction, the final save at shutdown. -> room, store, protocol.
- :mod:`collab.cluster`: other nodes' traffic through the relay, subscription and resync.
  -> room, awareness, relay, protocol.
- :mod:`collab.receiver`: dispatch of one peer's y-protocol message by type; answer and receive
  budgets. -> room, awareness, persistence, throttle, protocol (and the manager at run time).
- :mod:`collab.manager`: :class:`~collab.manager.RoomManager`, all rooms of the node: load and
  unload, join and leave, the change path (limits, poison, broadcast, relay, persist), the
  maintenance and re-check loops, the API the server uses (``services.rooms``). -> everything
  above, sender (the shared coalescer).
- :mod:`collab.connection`: the y-websocket connection (handshake, receive loop), one document
  per socket. -> manager, sender, wire. A second protocol is a sibling module: a
  :class:`~collab.room.Link` per document, and ``admit`` / ``join`` / ``receiver.receive`` /
  ``leave`` on the manager.
- :mod:`collab.hocuspocus`: the Hocuspocus protocol (``WS /collab``), many documents per socket,
  each a :class:`~collab.room.Link` over the same manager API. -> manager, connection (its
  receive-loop pacing), sender, protocol, wire.
- :mod:`collab.sender`: writing frames to one y-websocket socket without a task per frame (the
  direct-transport fast path). -> wire.
- :mod:`collab.relay` (Redis pub/sub between nodes), :mod:`collab.store` (the storage interface
  the server implements), :mod:`collab.throttle` (token buckets), :mod:`collab.textsize`,
  :mod:`collab.textdiff`, :mod:`collab.versions`, :mod:`collab.suggestions`: leaves.

:mod:`wire.websocket` (frame encoding, the direct-transport check, close codes) is shared with
``realtime``; ``collab`` and ``realtime`` do not import each other.
"""
