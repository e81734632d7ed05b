"""The ASGI app: what `manage.py serve` (uvicorn) serves. Event streams are async responses."""

import os

from django.conf import settings
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

from observability.middleware import api_error, too_large_detail

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gamed_console.settings")
# Read by the settings: this process serves the web, from a bounded pool of connections.
os.environ.setdefault("GAMED_PROCESS", "web")


class BodyLimit:
    """A body whose Content-Length is over DATA_UPLOAD_MAX_MEMORY_SIZE is refused with 413
    before it is read: Django's ASGI handler would first copy all of it to a temporary file."""

    def __init__(self, app, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        length = dict(scope.get("headers", ())).get(b"content-length", b"")
        if scope["type"] != "http" or not length.isdigit() or int(length) <= self.limit:
            return await self.app(scope, receive, send)
        detail = too_large_detail()
        if scope["path"].startswith("/api/"):
            body, content_type = api_error(413, detail).content, b"application/json"
        else:
            body, content_type = detail.encode(), b"text/plain; charset=utf-8"
        headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


application = get_asgi_application()
if settings.GAMED_SERVE_STATIC:
    # `make run` serves admin's CSS and JavaScript itself; production's proxy serves them.
    application = ASGIStaticFilesHandler(application)
application = BodyLimit(application, settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
