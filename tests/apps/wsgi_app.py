"""Plain WSGI function app: /  and  /slow?s=F (time.sleep in the WSGI thread).

Also the benchmark's "wsgi" app (bench/run.py serves GET / and /slow): keep `/` as cheap as it is,
or the benchmark's figures stop being comparable from one run to the next.
"""

import json
import os
import time
from urllib.parse import parse_qs

NAME = "wsgi_app"


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/slow":
        seconds = float(parse_qs(environ.get("QUERY_STRING", "")).get("s", ["1"])[0])
        time.sleep(seconds)
    elif path != "/":
        body = (json.dumps({"pid": os.getpid(), "error": "not found"}) + "\n").encode()
        start_response("404 Not Found", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]
    body = (json.dumps({"pid": os.getpid(), "app": NAME}) + "\n").encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
