"""Settings of the serving test project (see ``__init__``)."""

from __future__ import annotations

import json
import os

from tests.settings import SECRET_KEY as TEST_SECRET_KEY
from tests.settings import TEST_KEYS

LIVE = json.loads(os.environ.get("LAYERED_LIVE", "{}"))

SECRET_KEY = TEST_SECRET_KEY  # the test process signs the URLs this server checks
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
ROOT_URLCONF = "tests.serving_project.urls"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "layered_storage",
    "tests.testapp",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": LIVE.get("db", ":memory:"),
    }
}
STATIC_URL = "/static/"
LAYERED_STORAGE = {"KEYS": TEST_KEYS}
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "inner": LIVE.get(
        "inner", {"BACKEND": "django.core.files.storage.InMemoryStorage"}
    ),
    "private": {
        "BACKEND": "layered_storage.LayeredStorage",
        "OPTIONS": {
            "inner": "inner",
            "layers": LIVE.get("layers", ["zstd", "aes-gcm"]),
            **LIVE.get("options", {}),
        },
    },
    # The same files, each request checked by the default permission (staff).
    "protected": {
        "BACKEND": "layered_storage.LayeredStorage",
        "OPTIONS": {
            "inner": "inner",
            "layers": LIVE.get("layers", ["zstd", "aes-gcm"]),
            "url_policy": "protected",
        },
    },
}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {
        "file": {
            "class": "logging.FileHandler",
            "filename": LIVE.get("log", os.devnull),
        }
    },
    "loggers": {"layered_storage": {"handlers": ["file"], "level": "DEBUG"}},
}
