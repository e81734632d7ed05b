from django.urls import path, re_path
from django.views.generic import RedirectView

from gamed_console import admin_urls
from observability.api import api, unknown_endpoint
from observability.metrics import metrics_view

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    *admin_urls.urlpatterns,
    path("api/", api.urls),
    path("metrics", metrics_view, name="metrics"),
    re_path(r"^api/(?P<rest>.*)$", unknown_endpoint),
]
