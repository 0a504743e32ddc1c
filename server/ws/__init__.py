"""The ``/ws`` live-events endpoint: who may read which channel (:mod:`.policy`, with its
:mod:`.cache`) and the wiring of the realtime hub, broker and outbox drain into the app
(:mod:`.wiring`)."""
