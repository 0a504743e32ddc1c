"""Live co-editing of lessons over the y-websocket protocol (never imports ``server``)."""
