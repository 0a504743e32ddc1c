"""The transactional outbox of live events (§7): domain code records an event in its own
transaction (:mod:`.emit`, rows of :mod:`.models`); :mod:`.drain` publishes committed rows to
the broker, exactly once and in order per channel."""
