import os

from django.http import JsonResponse
from django.urls import path


def index(request):
    return JsonResponse({"pid": os.getpid(), "app": "channels_site"})


urlpatterns = [path("", index)]
