"""Headers on every answer: `Cache-Control: no-store` (cards and feedback carry patient data, and nothing the service
says is for a cache to keep; the console's static files set their own), `X-Content-Type-Options: nosniff`, and
`Vary: Origin` (CORS answers differ by the Origin asked from, so a cache must not serve one origin's answer to
another, nor to a request with none)."""

from __future__ import annotations

from flask import Flask, Response


def install(app: Flask) -> None:
    app.after_request(secured)


def secured(response: Response) -> Response:
    headers = response.headers
    if "Cache-Control" not in headers:
        headers["Cache-Control"] = "no-store"
    headers["X-Content-Type-Options"] = "nosniff"
    vary = headers.get("Vary")
    if vary is None:
        headers["Vary"] = "Origin"
    elif "origin" not in vary.lower():
        headers["Vary"] = vary + ", Origin"
    return response
