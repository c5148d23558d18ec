"""Search policy: pruners, the fold test and the screen, sampler choice, and how a ``--budget``
is split. Policy decides; it is handed what it needs and never starts processes."""
