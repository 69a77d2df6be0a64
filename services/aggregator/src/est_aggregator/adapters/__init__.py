"""Adapters of the aggregator: the database session strategies and the raw sqlite3 statements of the hot path
(built only by ``app.py``, seen by the use cases through the ports of ``pictures.deps``)."""
