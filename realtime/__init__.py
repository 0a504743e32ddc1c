"""Live events: brokers (in-process, Redis) and the /ws hub (never imports ``server``)."""
