"""Django settings for the test suite: real storages in temporary folders."""

from __future__ import annotations

import os
import tempfile

SECRET_KEY = "layered-storage-tests-not-secret"
USE_TZ = True
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "layered_storage",
    "tests.testapp",
]
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
ROOT_URLCONF = "tests.urls"
MEDIA_ROOT = tempfile.mkdtemp(prefix="layered-storage-media-")

# Fixed test keys (never use these anywhere else): the first writes, both read.
TEST_KEYS = [
    "7G3p1mWb2vM6n0XrZk8yQh4sVt9uJc5dEf1aBg2iLo0=",
    "y1T6rK9wQ3eU7iO0pA4sD8fG2hJ5kL1zX6cV9bN3mQk=",
]
LAYERED_STORAGE = {"KEYS": TEST_KEYS}

STORAGES = {
    "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": MEDIA_ROOT},
    },
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage",
    },
    "private": {
        "BACKEND": "layered_storage.LayeredStorage",
        "OPTIONS": {"inner": "default", "layers": ["zstd", "aes-gcm"]},
    },
}

if os.environ.get("AWS_ENDPOINT_URL_S3"):
    STORAGES["s3"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": os.environ.get("S3_BUCKET", "layered-storage-tests")
        },
    }
