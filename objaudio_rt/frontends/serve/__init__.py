"""The HTTP service and the click-to-hear page (the optional extra `pip install objaudio[serve]`).

    objaudio serve                           # http://127.0.0.1:8000: the page and the API
    serve run objaudio_rt.frontends.serve.ray:app      # the same app as a Ray Serve deployment

The runtime (`objaudio_rt` without this package) never imports it, so it stays free of the web stack.
"""
from .app import create_app
from .limits import ServeLimits
from .service import Service

__all__ = ["create_app", "ServeLimits", "Service"]
