"""Benchmarks: what a request, a chunk and a job cost, against the budgets and against RQ and Celery.

`python -m bench` (or `make bench`) runs them all and prints one table; `--quick` is the small
mode CI runs. Benchmarks print figures; they are not timed tests.
"""
