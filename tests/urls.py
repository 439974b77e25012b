"""The test suite's URLconf: the serving views, where ``url()`` points."""

from __future__ import annotations

from django.urls import include, path

urlpatterns = [path("files/", include("layered_storage.urls"))]
