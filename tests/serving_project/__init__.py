"""A tiny Django project that serves layered files, for live-server and browser tests.

Configured by the ``LAYERED_LIVE`` environment variable (JSON: the inner storage's
STORAGES entry, the layers, the database path, a log file), so the test process
and the server it starts see the same storages and keys.
"""
