"""Benchmarks of dbp against same-run baselines: ``python -m bench --help`` (or ``make bench``).

Every figure is a ratio against a baseline measured in the same run, on the same machine and the
same kind of database, so the numbers say how much the framework and the domain logic cost, not
how fast this particular machine is.
"""
