"""Settings for running Django's file_storage tests (mirrors Django's test_sqlite).

No ``STORAGES``: Django's StorageHandler tests expect its defaults, and the layered
storages the suite builds get their inner storage directly (see ``storage``). The
encryption key is random per run: nothing stored outlives the run.
"""

from __future__ import annotations

import base64
import os

SECRET_KEY = "django-suite-not-secret"
DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3"},
}
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "file_storage",
]
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# As in Django's own tests/test_sqlite.py; the time-zone tests set both values.
USE_TZ = False
ROOT_URLCONF = "file_storage.urls"
STATIC_URL = "static/"  # as Django's runtests.py; LiveServerTestCase needs one
MIDDLEWARE: list[str] = []

LAYERED_STORAGE = {
    "KEYS": [base64.urlsafe_b64encode(os.urandom(32)).decode("ascii")],
    "NAMESPACE": "django-suite",
}
