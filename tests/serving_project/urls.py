"""URLs of the serving test project: the file views, the admin, a pdf.js page."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.staticfiles.views import serve as serve_static
from django.urls import include, path

from tests.serving_project import views
from tests.testapp.models import Document

if not admin.site.is_registered(Document):
    admin.site.register(Document)

urlpatterns = [
    path("files/", include("layered_storage.urls")),
    path("admin/", admin.site.urls),
    path("page/<str:page>", views.page),
    path("static-test/<path:name>", views.static_file),
    # The admin's CSS, so screenshots look as they do for users (DEBUG is off).
    path("static/<path:path>", serve_static, {"insecure": True}),
]
