"""The web console: sign-in, sessions, roles and tenant scope, pages and the REST API (``/api/v1``).

A layer between :mod:`dashboard` and :mod:`telework`: it may import dashboard, workers, realtime,
storage, the protocol and core. :func:`web.app.create_app` builds the FastAPI application.
"""
