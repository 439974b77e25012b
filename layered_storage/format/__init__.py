"""On-object formats: LSE1 (authenticated encryption) and LSZ1 (seekable zstd)."""
