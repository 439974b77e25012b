"""Settings for Django's tests with LayeredStorage as ``STORAGES["default"]``.

Modelled on Django's ``tests/runtests.py`` (its always-installed apps, middleware,
templates and migration settings) and ``tests/test_sqlite.py`` (in-memory SQLite),
with the suites' packages as apps, as runtests.py installs them. The default
storage is a plain ``layered_storage.LayeredStorage`` over the FileSystemStorage
``"layered-inner"``, which keeps Django's defaults: its folder is ``MEDIA_ROOT``,
left at ``""`` as in Django's suite (``test_utils`` asserts it), so files land in
the working folder, which the runner makes a fresh temporary one (``STATIC_ROOT``
is a folder there too). URLs are the
inner storage's (``url_policy="inner"``), which is what Django's tests assert. The
encryption key is random per run: nothing stored outlives the run.
"""

from __future__ import annotations

import base64
import copy
import os

import django
from django.utils.log import DEFAULT_LOGGING

from tests.django_suite.storage import configured_layers
from tests.django_suite.suites import RUNS

SECRET_KEY = "django-suite-not-secret"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3"}}
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sites",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.admin.apps.SimpleAdminConfig",
    "django.contrib.staticfiles",
    "layered_storage",
    *RUNS["default_storage"].packages,
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
            ],
        },
    }
]
# The suites set their own URLconfs; this one has the layered serving view.
ROOT_URLCONF = "tests.urls"
STATIC_URL = "static/"
# As runtests.py: a folder of its own (ManifestStaticFilesStorage reads it).
STATIC_ROOT = os.path.join(os.getcwd(), "static")
SITE_ID = 1
LANGUAGE_CODE = "en"
USE_TZ = False
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
MIGRATION_MODULES = {"auth": None, "contenttypes": None, "sessions": None}
SILENCED_SYSTEM_CHECKS = ["fields.W342"]
LOGGING = copy.deepcopy(DEFAULT_LOGGING)
LOGGING["loggers"]["django"]["level"] = "ERROR"
if django.VERSION < (5, 0):
    # As Django 4.2's runtests.py: the default renderer warns (RemovedInDjango50).
    FORM_RENDERER = "django.forms.renderers.DjangoDivFormRenderer"

STORAGES = {
    "default": {
        "BACKEND": "layered_storage.LayeredStorage",
        "OPTIONS": {
            "inner": "layered-inner",
            "layers": configured_layers(),
            "url_policy": "inner",
        },
    },
    "layered-inner": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage",
    },
}
LAYERED_STORAGE = {
    "KEYS": [base64.urlsafe_b64encode(os.urandom(32)).decode("ascii")],
    "NAMESPACE": "django-suite",
}
