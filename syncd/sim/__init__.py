"""Platform simulators: small ASGI apps that implement each platform's real endpoints,
pagination, errors, rate limits and signed webhooks, for tests and the ``demo`` command.

``base.py`` holds what every simulator shares (fault injection, a server thread); each
platform has its own module (``slack.py``, ``gmail.py``).
"""
