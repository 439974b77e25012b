"""Run Django's own ``tests/file_storage`` suite against LayeredStorage.

Django's test code is never committed: ``fetch`` downloads the sdist of exactly the
installed Django version from the package index (``pip download``), caches it under
``.cache/`` (git-ignored) and extracts ``tests/file_storage/`` next to it. ``run`` is
the entry point of the subprocess that runs those tests with Django's own test
runner, after making every ``FileSystemStorage`` the tests build a
``LayeredFileSystemStorage`` (``storage``): a LayeredStorage whose inner storage is
a real FileSystemStorage built from the same arguments. ``exclusions`` lists, with
reasons, the few tests that cannot apply to a layered storage.
"""
