"""The benchmarked part of poem-api's API, written the way a Flask team would write it.

Every stack in bench/ serves this one WSGI app, so gunicorn, uWSGI and nginx+uWSGI do the same
work as poem-api on the same endpoints:

- GET /                  small JSON info document (name, version, revision, hostname, message)
- POST /api/v1/echo      the same request schema and limits as poem-api, validated by hand:
                         400 malformed JSON, 415 wrong content type, 413 body over 64 KiB,
                         422 listing every bad field; every error is application/problem+json
- GET /api/v1/delay/<ms> sleeps ms milliseconds (<= 10 s, else 400), answers {"delay_ms": ms}
- GET /healthz           health endpoint (poem-api has it on its admin port)

Like poem-api, every response carries x-request-id (taken from the request or generated), and
problem bodies carry it too.
"""

import json
import os
import socket
import time
import uuid

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

BODY_LIMIT = 64 * 1024  # poem-api's default POEM_API_BODY_LIMIT
MAX_DELAY_MS = 10_000  # poem-api's default POEM_API_MAX_DELAY

app = Flask(__name__)
app.config["MAX_CONTENT_LENGTH"] = BODY_LIMIT

INFO = {
    "name": "bench-flask",
    "version": "0.1.0",
    "revision": os.environ.get("BENCH_REVISION", "unknown"),
    "hostname": socket.gethostname(),
    "message": os.environ.get("BENCH_MESSAGE", "greetings from flask"),
}

TITLES = {
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    500: "Internal Server Error",
}


def _json(obj, status=200, content_type="application/json"):
    body = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return Response(body, status=status, content_type=content_type)


def problem(status, detail, errors=None):
    body = {
        "type": "about:blank",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "instance": request.path,
        "request_id": g.get("request_id", ""),
    }
    if errors is not None:
        body["errors"] = errors
    return _json(body, status, "application/problem+json")


@app.before_request
def _request_id():
    g.request_id = request.headers.get("x-request-id") or str(uuid.uuid4())


@app.after_request
def _echo_request_id(resp):
    resp.headers["x-request-id"] = g.get("request_id", "")
    return resp


@app.errorhandler(HTTPException)
def _http_error(exc):
    status = exc.code or 500
    if status == 413:
        return problem(413, f"request body exceeds {BODY_LIMIT} bytes")
    return problem(status, exc.description or TITLES.get(status, "Error"))


@app.errorhandler(Exception)
def _internal_error(exc):  # never leak details to the client
    app.logger.exception("internal error, request_id=%s", g.get("request_id", ""))
    return problem(500, "internal server error")


@app.get("/")
def index():
    return _json(INFO)


@app.get("/healthz")
def healthz():
    return _json({"status": "ok"})


@app.get("/api/v1/delay/<int:ms>")
def delay(ms):
    if ms > MAX_DELAY_MS:
        return problem(400, f"delay must be at most {MAX_DELAY_MS} ms")
    time.sleep(ms / 1000.0)
    return _json({"delay_ms": ms})


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def validate_echo(doc):
    """Return (value, errors): the echo response, or every offending field."""
    errors = []

    def bad(field, message):
        errors.append({"field": field, "message": message})

    if not isinstance(doc, dict):
        bad("", "expected a JSON object")
        return None, errors

    message = doc.get("message")
    if "message" not in doc:
        bad("message", "is required")
    elif not isinstance(message, str):
        bad("message", "must be a string")
    elif not 1 <= len(message) <= 1024:
        bad("message", "length must be between 1 and 1024 characters")

    tags = doc.get("tags")
    if tags is None:
        tags = []
    elif not isinstance(tags, list):
        bad("tags", "must be an array of strings")
    else:
        if len(tags) > 16:
            bad("tags", "must have at most 16 items")
        for i, tag in enumerate(tags):
            if not isinstance(tag, str):
                bad(f"tags[{i}]", "must be a string")
            elif len(tag) > 64:
                bad(f"tags[{i}]", "length must be at most 64 characters")

    count = doc.get("count")
    if count is None:
        count = 1
    elif not _is_int(count):
        bad("count", "must be an integer")
    elif not 1 <= count <= 100:
        bad("count", "must be between 1 and 100")

    meta = doc.get("meta")
    out_meta = None
    if meta is not None:
        if not isinstance(meta, dict):
            bad("meta", "must be an object")
        else:
            out_meta = {}
            source = meta.get("source")
            if source is not None:
                if not isinstance(source, str):
                    bad("meta.source", "must be a string")
                elif len(source) > 64:
                    bad("meta.source", "length must be at most 64 characters")
                else:
                    out_meta["source"] = source
            priority = meta.get("priority")
            if priority is not None:
                if not _is_int(priority):
                    bad("meta.priority", "must be an integer")
                elif not 0 <= priority <= 9:
                    bad("meta.priority", "must be between 0 and 9")
                else:
                    out_meta["priority"] = priority

    if errors:
        return None, errors
    out = {"message": message, "tags": tags, "count": count}
    if out_meta is not None:
        out["meta"] = out_meta
    return out, []


@app.post("/api/v1/echo")
def echo():
    if request.mimetype != "application/json":
        return problem(415, "expected content type application/json")
    if request.content_length is not None and request.content_length > BODY_LIMIT:
        return problem(413, f"request body exceeds {BODY_LIMIT} bytes")
    raw = request.get_data(cache=False)  # raises 413 past MAX_CONTENT_LENGTH
    try:
        doc = json.loads(raw)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        return problem(400, f"malformed JSON: {exc}")
    value, errors = validate_echo(doc)
    if errors:
        return problem(422, "request body failed validation", errors)
    return _json(value)


# WSGI entry point for gunicorn (app:app) and uWSGI (module = app:app)
application = app
