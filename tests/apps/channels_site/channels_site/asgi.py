"""The ASGI entry point, as Channels' docs write it: Django for HTTP, the room consumer for
WebSockets (`channels_site.asgi:application`)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "channels_site.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from .consumers import RoomConsumer  # noqa: E402

application = ProtocolTypeRouter({
    "http": django_asgi_app,
    "websocket": URLRouter([path("ws/room/<str:name>/", RoomConsumer.as_asgi())]),
})
