"""A minimal Django Channels site (channels 4): a WebSocket chat room whose messages reach every
member through the channel layer's group broadcast, and the test apps' `/` answer over HTTP.

The channel layer is Channels' in-memory one, which broadcasts within one process: the tests serve
this site with one worker. Across workers a deployment uses channels_redis (docs/engine.md)."""

import os

SECRET_KEY = "channels-site-test-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "channels"]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "channels_site.urls"
ASGI_APPLICATION = "channels_site.asgi.application"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3",
                         "NAME": os.environ.get("DJANGO_DB", ":memory:")}}
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
USE_TZ = True
