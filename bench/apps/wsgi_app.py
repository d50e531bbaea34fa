"""Plain WSGI function app: the benchmark's "wsgi" app.

GET /         -> 200 {"pid": <worker pid>, "app": "wsgi"}
GET /slow?s=F -> the same after time.sleep(F) (in the WSGI thread)
"""

import json
import os
import time
from urllib.parse import parse_qs


def app(environ, start_response):
    if environ.get("PATH_INFO") == "/slow":
        time.sleep(float(parse_qs(environ.get("QUERY_STRING", "")).get("s", ["1"])[0]))
    body = json.dumps({"pid": os.getpid(), "app": "wsgi"}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
