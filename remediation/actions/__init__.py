"""Fix actions by resource: ``core`` (dry-run, audit, lock), ``database``, ``logs``, ``services``,
``files``, ``frontend``, ``browser``. They observe the target only through ``observe/``.
"""
