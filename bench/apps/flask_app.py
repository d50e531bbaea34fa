"""Flask app (WSGI): the benchmark's "flask" app.

GET /         -> 200 {"pid": <worker pid>, "app": "flask"}
GET /items/7  -> 200 a small JSON document
GET /slow?s=F -> the same as / after time.sleep(F)
"""

import os
import time

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.get("/")
def root():
    return jsonify(pid=os.getpid(), app="flask")


@app.get("/items/<int:item_id>")
def item(item_id):
    return jsonify(item_id=item_id, name=f"item {item_id}", price=item_id * 1.5, tags=["a", "b"], pid=os.getpid())


@app.get("/slow")
def slow():
    time.sleep(float(request.args.get("s", "1")))
    return jsonify(pid=os.getpid(), app="flask")
