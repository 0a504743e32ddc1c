"""Low-level details shared by ``collab``, ``realtime`` and ``server`` (the WebSocket wire, Redis,
scheduler statistics); imports none of them."""
