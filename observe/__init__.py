"""Observation of a FossaWork V2 target, importable without pytest (as testinfra's ``modules/``).

One module per resource: ``profile`` (what the target is), ``db``, ``logs``,
``processes`` (and the services they belong to), ``files``, ``http`` and ``api``,
``frontend``, ``browser``, ``system``. The health checks see the target through
these objects (``fixtures/`` wraps them for pytest) and the fix actions act on
what the very same objects report, so a fix acts on exactly what its check saw.
Nothing here writes to the target.
"""
