"""bloodcell-search: an Optuna study coordinator for Keras image classifiers.

Layout, by role (imports only point down this list):

- commands, the ``python -m search.X`` entry points: ``run``, ``clean``, ``export``,
  ``predict``, ``report``; with the helpers they share: ``cli`` (exit codes, the usage error,
  logging), ``atomic`` (atomic file writes) and ``text`` (counted nouns);
- ``engine``: runs a study (session, coordinator, pool, worker, protocol, recovery, progress,
  devices, trainer plug-ins, weights checks, the ``--budget`` run's end);
- ``policy`` (pruning, the screen, samplers, the budget split) and ``reporting`` (report
  summary, plots, dashboard notes, confusion pictures), beside ``data`` (loading, checking,
  prediction input) and ``cleaning``; policy never writes, reporting never imports the engine;
- ``testing``: the fake trainer and fault drills;
- then ``storage`` (URLs, the trial and study records, the study plan and resume checks) and
  ``trainer`` (training, and the records it returns), which import nothing of ``search``.
"""
