"""Flask app (WSGI): /."""

import os

from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/")
def root():
    return jsonify(pid=os.getpid(), app="flask_app")
