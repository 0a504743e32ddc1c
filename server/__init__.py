"""Scriptorium: the server of a learning platform with live co-editing and live forums.

Module map. Each layer imports only the layers below it (``A -> B``: A imports B); the rules are
checked on the source by ``tests/app/test_layering.py``.

Assembly (nothing imports these; only the CLI names ``server.app:create_app``, as a string)
    server/app.py           create_app: which APIs, sockets, components and middleware, in what order
    server/infra.py         /healthz, /readyz, /metrics (on the app when METRICS=on), /openapi.json, /docs
    server/problems.py      errors as problem+json: the app's exception handlers (the errors: server/errors.py)
    server/middleware.py    request id, access log and metrics; the SQL statement header
    server/ws/              the /ws live-events endpoint: policy.py (who may read which channel,
                            re-checked in batches), cache.py (its memo), wiring.py (broker, outbox
                            drain and hub for the app's lifetime, the /ws route)
    server/models.py        the schema registry (every domain's tables) for Alembic and the schema test
    server/cli.py, __main__.py, demo.py, migrate.py   the command line, demo data, migrations + seeds

Domains: server/<domain>/{models,service,api,schemas}.py (+ queries.py where reads are many),
calling each other one way:
    users          accounts, webhooks
    notifications  -> outbox
    gamification   -> notifications            streaks, goals, achievements (activity.py: the hook)
    learning       -> gamification             enrollment, progress, quizzes
    catalog        -> learning, notifications  courses, units, lessons, collaborators, tags; adding or
                                               removing a lesson recomputes learners' progress
    forum          -> gamification, notifications
    flashcards     -> gamification
    feedback       -> notifications
    editing        -> notifications, collab     live-document storage, versions, suggested edits
    media          uploads and external media of lessons
    web            what the browser app needs beyond the contract (api.py) and its files (static.py)
  Every domain also uses the core below. Tables are a layer of their own under all code: a
  ``models.py`` imports only server.db and names other tables by string, and any domain's code
  (and the core's access policy) may query any table. So learning's queries join courses and the
  catalog's course cards count enrollments, while catalog *code* is called by no domain below it.

Core (used by every domain; reads domain tables, never domain code)
    server/routing.py       declaring a REST route: path, method, access= (enforced before the handler),
                            response= (published, checked when CHECK_RESPONSES=1), OpenAPI description
    server/access.py        the one policy of who may read or change what: named policies per domain
                            (edit_course, post_author_or_staff, own_goal, ...) (reads domain tables)
    server/schemas.py       Out and Page[T], the bases of every domain's response models
    server/live_events.py   the /ws events: name -> payload model and channel (each domain's EVENTS)
    server/auth.py          tokens -> Principal; just-in-time users (reads the users table)
    server/http.py          request parsing limits, JSON encoding, cursors
    server/errors.py        ProblemError and its kinds (NotFound, Forbidden, ValidationFailed, ...)
    server/outbox/          live events: models.py (event_outbox, event_channels), emit.py (record an
                            event in the writer's transaction), drain.py (publish committed rows in order)
    server/state.py         Services, what the running app holds (real types; components fill in broker,
                            hub, rooms, outbox at startup)
    server/markdown.py, ratelimit.py, limits.py, nul_guard.py, websocket_protocol.py, loopwatch.py,
    metrics.py, metrics_listener.py, settings.py, clock.py, logs.py, embedded.py
    server/db.py            declarative base, engine, sessions: imports no server module

Libraries (import nothing of the server, nor each other; the app hands them callables at startup)
    collab/      live documents (module map in collab/__init__.py): connection.py (the y-websocket
                 socket), receiver.py (dispatch by message type, budgets), manager.py (RoomManager:
                 open/load/unload, the server-facing API), room.py (document + peers, the Link a
                 connection implements), awareness.py, persistence.py ("saved", log, versions,
                 compaction), cluster.py (relay in), access.py (grants, re-checks), relay.py, store.py
    realtime/    the /ws hub and its brokers (in-process, Redis Streams)
    wire/        what both sockets share: frame encoding, the direct-transport check, close codes

Where a change goes:
    a REST route and its access rule   server/<domain>/api.py (the rule itself, if new: server/access.py)
    a collab message type              collab/protocol.py (encoding) and its handler in collab/receiver.py
    a collab protocol (e.g. Hocuspocus) a connection module beside collab/connection.py implementing
                                       collab.room.Link and calling RoomManager.admit/join/leave
    a live event                       emit() in the domain's service.py, in the write's transaction,
                                       its payload model in the domain's schemas.py EVENTS;
                                       a new kind of channel: server/ws/policy.py
    a page                             web/src/pages/<page>.js and its line in web/src/main.js's
                                       routes table; a new top-level path
                                       segment reserved for the server: WEB_RESERVED in server/web/static.py
"""
