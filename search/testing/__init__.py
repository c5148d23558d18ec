"""Test doubles shipped with the product: the deterministic fake trainer (``--trainer fake``) and
the fault drills (``SEARCH_FAULTS``), for tests, benchmarks of the machinery and docs."""
