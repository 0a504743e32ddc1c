"""WebSocket wire details shared by ``collab`` and ``realtime`` (imports neither, nor ``server``)."""
