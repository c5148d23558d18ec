"""What a study shows its user: the report's summary, tables and plots, where the fold-epoch
budget went, dashboard notes and confusion pictures. Reporting reads storage and never imports
the engine."""
