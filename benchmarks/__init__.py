"""Benchmarks for django-layered-storage: ``python -m benchmarks [--full] [--check]``.

Everything is measured against baselines timed in the same run (raw zstandard and
AES-GCM loops, plain file copies, plain ``FileSystemStorage``, the django-pzip-storage
peer), so only ratios matter; absolute numbers depend on the machine and its load.
"""

from __future__ import annotations

MiB = 1024 * 1024
