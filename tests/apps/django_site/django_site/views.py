"""herdsman's test routes in the generated site: `/` (the test apps' pid/app answer), `/items/<id>`
(a JSON view, the benchmark's Django route), `/echo` (POST, CSRF-exempt: the body's length and
sha256), `/stream` (a StreamingHttpResponse of `?n=` chunks)."""

import hashlib
import os

from django.http import JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt


def index(request):
    return JsonResponse({"pid": os.getpid(), "app": "django_site"})


def item(request, item_id):
    return JsonResponse({"item_id": item_id, "name": "item %d" % item_id, "tags": ["a", "b"], "price": 9.5})


@csrf_exempt
def echo(request):
    body = request.body
    return JsonResponse({"size": len(body), "sha256": hashlib.sha256(body).hexdigest(), "method": request.method})


def stream(request):
    n = int(request.GET.get("n", "3"))
    return StreamingHttpResponse((b"django chunk %d\n" % i for i in range(n)), content_type="text/plain")
