"""The event stream: every committed event published to Kafka, and what consumes it.

Read ``relay.py`` first (the one publisher per namespace, in commit order, at least once),
then ``subscriptions.py`` (consuming with de-duplication) and ``projections.py`` (read
models kept in the store's database); ``format.py`` is the record format, ``schemas.py``
its JSON Schemas.
"""
