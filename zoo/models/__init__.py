"""One sub-package per paper; each defines ``PAPER`` (a `zoo.registry.Paper`) in a light ``__init__.py``."""
