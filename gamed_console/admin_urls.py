"""Admin's routes on their own, part of `gamed_console.urls`: a link to a run's page is
reversed here, so a command that prints one does not build the JSON API's routes and schemas."""

from django.contrib import admin
from django.urls import path

urlpatterns = [path("admin/", admin.site.urls)]
