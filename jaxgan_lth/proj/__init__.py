"""Project-specific analysis, kept out of the training core (as big_vision keeps ``proj/``).

``study`` turns the workdirs of the studies of ``configs/study_*.py`` into digests, tables and
plots for ``docs/results.md``. Nothing in the core package imports from here.
"""
