"""The ``tfic`` command-line interface: an application on top of the core and the services.

Nothing in ``tfic`` (the shared core) or in a service imports this package; ``lint-imports``
(``make lint``) checks it.
"""
