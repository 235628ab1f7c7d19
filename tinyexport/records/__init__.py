"""Run records: one immutable row per command run in a local SQLite store (``<cache>/runs.sqlite``)."""
