"""Run Django's own storage-related tests against LayeredStorage.

Django's test code is never committed: ``fetch`` downloads the sdist of exactly the
installed Django version from the package index (``pip download``), caches it under
``.cache/`` (git-ignored) and extracts the test packages that ``suites`` names
(``file_storage``, ``file_uploads``, ``model_fields``, ``admin_widgets``,
``model_forms``, ``test_utils``) next to it. ``run`` is the entry point of the
subprocess that runs them with Django's own test runner, under ``settings``
(file_storage, Django's default STORAGES) or ``default_storage_settings``
(LayeredStorage as ``STORAGES["default"]``), after making every
``FileSystemStorage`` the tests build a ``LayeredFileSystemStorage`` (``storage``):
a LayeredStorage whose inner storage is a real FileSystemStorage built from the
same arguments. ``exclusions`` lists, with their kinds and reasons, the few tests
that cannot apply to a layered storage.
"""
