"""Probe app: the same forwarding as forward_app, as a Django async view behind the project's
full settings and middleware stack (DJANGO_SETTINGS_MODULE=bench.probes.django_forward).

It answers the question "why is /v1/* not a Django view?" with numbers; nothing in the
product imports it.
"""

from __future__ import annotations

import os

from aicc_site.settings import *  # noqa: F403 - the project's settings, one override below

ROOT_URLCONF = "bench.probes.django_forward"
# PROBE_DJANGO_MIDDLEWARE=0: Django's handler alone, to tell its cost from the middleware's.
if os.environ.get("PROBE_DJANGO_MIDDLEWARE", "1") == "0":
    MIDDLEWARE: list[str] = []

from django.http import HttpRequest, HttpResponse  # noqa: E402
from django.urls import path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402

from bench.probes.forward_app import make_forwarder  # noqa: E402

_forwarder = make_forwarder("aiohttp")


@csrf_exempt
async def chat_completions(request: HttpRequest) -> HttpResponse:
    status, answer = await _forwarder.post("/v1/chat/completions", request.body)
    return HttpResponse(answer, status=status, content_type="application/json")


async def health(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"{}", content_type="application/json")


urlpatterns = [
    path("v1/chat/completions", chat_completions),
    path("health", health),
]


def application_factory():  # type: ignore[no-untyped-def]
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.probes.django_forward"
    import django
    from django.core.asgi import get_asgi_application

    django.setup()
    return get_asgi_application()
