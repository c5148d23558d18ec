"""The engine that runs a study: the session (set-up and resume), the coordinator (scheduling,
retries, surplus), the worker pool and its message protocol, recovery of dead trials, progress,
devices, trainer plug-ins, weights checks and the ``--budget`` run's end (``finish``).

It acts on the decisions of ``search.policy`` and writes through ``storage``.
"""
