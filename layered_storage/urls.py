"""The URLconf that ``url()`` points into: ``path("files/", include(...))``.

``<token>/<basename>`` serves a signed URL; ``p/<alias>/<name>`` a file of a
``"protected"`` storage, which always has at least three segments, so the two
never overlap.
"""

from __future__ import annotations

from django.urls import path

from layered_storage import views

app_name = "layered_storage"

urlpatterns = [
    path("p/<str:alias>/<path:name>", views.protected_file, name="protected"),
    path("<str:token>/<str:filename>", views.signed_file, name="signed"),
]
