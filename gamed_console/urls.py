from django.contrib import admin
from django.urls import path, re_path
from django.views.generic import RedirectView

from observability.api import api, unknown_endpoint
from observability.metrics import metrics_view

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    path("metrics", metrics_view, name="metrics"),
    re_path(r"^api/(?P<rest>.*)$", unknown_endpoint),
]
