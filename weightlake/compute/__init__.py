"""Lake-level analysis runs: read a pinned snapshot, call the pure functions of
:mod:`weightlake.analysis` (or :mod:`weightlake.dynamics`), commit one result table.

This layer sits above the pure functions, so ``analysis`` never opens a transaction.
"""
