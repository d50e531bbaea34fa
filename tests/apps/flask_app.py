"""Flask app (WSGI): /  /items/<int:item_id>  /slow?s=F (time.sleep in the WSGI thread).

Also the benchmark's "flask" app (bench/run.py serves GET /items/7): keep these routes as cheap as
they are, or the benchmark's figures stop being comparable from one run to the next.
"""

import os
import time

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.get("/")
def root():
    return jsonify(pid=os.getpid(), app="flask_app")


@app.get("/items/<int:item_id>")
def item(item_id):
    return jsonify(item_id=item_id, name=f"item {item_id}", price=item_id * 1.5, tags=["a", "b"], pid=os.getpid())


@app.get("/slow")
def slow():
    time.sleep(float(request.args.get("s", "1")))
    return jsonify(pid=os.getpid(), app="flask_app")
