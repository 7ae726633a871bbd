"""The store: one relational database, append-only.

``engine`` opens a store, migrates it and holds the one way to write (a locked transaction that
appends one event); ``tables`` the ORM records; ``chain`` the digests every record and event
carries; ``chunks`` row payloads in chunks; ``log`` the event log and whether a record is anchored
in it; ``verify`` recomputes all of it; ``files`` writes files outside the database atomically.
"""
