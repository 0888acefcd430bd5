"""ASGI entry point: `/v1/*` and `/health*` go to the gateway's thin handler, everything else
(admin, management API, dashboard) to Django. Lifespan events start and stop the gateway's
process-wide resources (Redis pool, upstream session, credential watch)."""

from __future__ import annotations

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aicc_site.settings")
django.setup()

from django.core.asgi import get_asgi_application  # noqa: E402

from gateway.app import GatewayApp  # noqa: E402
from gateway.http import Receive, Scope, Send  # noqa: E402

GATEWAY_PREFIXES = ("/v1/", "/v1", "/health", "/metrics")
# Served by Django so that staff sessions work; see gateway.health_views.
DJANGO_HEALTH_PATHS = ("/health/detailed", "/health/detailed/")


class Router:
    def __init__(self) -> None:
        self.gateway = GatewayApp()
        self.django = get_asgi_application()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif (
            scope["type"] == "http"
            and scope["path"].startswith(GATEWAY_PREFIXES)
            and scope["path"] not in DJANGO_HEALTH_PATHS
        ):
            await self.gateway(scope, receive, send)
        else:
            await self.django(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.gateway.startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.gateway.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


application = Router()
