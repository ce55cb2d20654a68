"""The library store: a library directory as a live database.

- :mod:`~newwave.store.database`: the SQLite database, the source of truth (tracks, metadata,
  per-channel content hashes, vectors and texts), written in transactions;
- :mod:`~newwave.store.names`: the tracks' artist, title and album names by lookup key;
- :mod:`~newwave.store.checkpoints`: each channel's index saved now and then, with checksums;
- :mod:`~newwave.store.lock`: one writing process at a time;
- :mod:`~newwave.store.library`: the three together, and the upkeep of the in-memory indexes;
- :mod:`~newwave.store.migrate`: libraries of format 1 converted, and the names table added.
"""
