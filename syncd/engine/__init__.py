"""The sync engine: import, ingest, export, webhook inbox, polling, resync, leases, callbacks.

``Engine`` (``engine.py``) composes the parts; the API and CLI talk to it only.
"""
