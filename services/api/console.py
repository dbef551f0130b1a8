"""The web console of `vigil api`: server-rendered pages (Jinja2) and a little plain JavaScript, no build step.

Pages: the camera wall (``/``), the alert review queue (``/review``), a camera (``/cameras/{id}``) and its
zone editor (``/cameras/{id}/zones``); ``/console/cards/{alert_id}`` renders one alert card for the live
updates. The pages read Redis through the same :class:`~vigil.services.api.store.AlertStore` as the API and
the browser calls the same ``/v1`` routes, so everything the console shows or changes goes through the API.

Sign-in: ``POST /login`` takes a token of the tokens file once and sets an HttpOnly, ``SameSite=Strict``
cookie holding it (the page scripts never see it; ``<img>``, ``<video>`` and ``EventSource`` send it
along). Changes (labels) made with that cookie must also carry the ``X-Vigil-Console`` header, which only
this site's own scripts can add (CORS is off), and a matching ``Origin`` (see :mod:`~vigil.services.api.app`).
Every page is sent with a strict Content-Security-Policy: scripts, styles and media from this origin only.
"""

from __future__ import annotations

import json
import logging
import time
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from vigil.services.api import metrics
from vigil.services.api.app import (
    COOKIE,
    AlertId,
    ApiContext,
    CameraId,
    context,
    cookie_token,
    cookie_value,
    same_origin,
)  # fmt: skip
from vigil.services.api.auth import Caller, short_hash
from vigil.services.api.core import CAMERA_ID, AlertItem, AlertQuery

log = logging.getLogger(__name__)


def package_dir(name: str) -> Path:
    """A folder shipped inside this package (``templates``, ``static``), found through package resources."""
    return Path(str(resources.files("vigil.services.api") / name))


LABEL_KINDS = ("bike", "vehicle", "skater", "fall", "other")
"""The kinds of a true anomaly the review queue offers (a false positive is ``false_positive``)."""
CSP = ("default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; script-src 'self'; style-src 'self'; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'")  # fmt: skip
PAGE_HEADERS = {"Content-Security-Policy": CSP, "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin",
                "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}  # fmt: skip
MAX_FORM_BYTES = 4096
_LINKS = {"label", "snapshot_url", "snapshot_kind", "clip_url", "evidence_status"}


def when(ns: int | None) -> str:
    """A capture time for people: ``2026-12-01 14:22:03 UTC``.

    Example:
        >>> when(1795378018859704048), when(None)
        ('2026-11-22 20:06:58 UTC', '')
    """
    return "" if not ns else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ns / 1e9))


def safe_next(path: str | None) -> str:
    """Where to go after signing in: a path of this site only (never ``//host`` or ``https://...``).

    Example:
        >>> safe_next("/review?camera=a"), safe_next("//evil.example/x"), safe_next("https://evil.example"), safe_next(None)
        ('/review?camera=a', '/', '/', '/')
    """
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path or len(path) > 500:
        return "/"
    return path


def page_caller(request: Request) -> Caller | None:
    """Who is signed in (the cookie's token and its role), or None."""
    token = cookie_token(request)
    role = None if token is None else context(request).tokens.role_of(token)
    return None if role is None else Caller(role, short_hash(token or ""))


def _to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303, headers=PAGE_HEADERS)


def build_console(ctx: ApiContext) -> APIRouter:
    """The console's routes (pages, sign-in, the card fragment) over ``ctx``."""
    from fastapi.templating import Jinja2Templates

    templates = Jinja2Templates(directory=str(package_dir("templates")))  # autoescaping on
    templates.env.filters["when"] = when
    router = APIRouter(include_in_schema=False)

    def render(request: Request, name: str, caller: Caller | None, status: int = 200, **values: Any) -> HTMLResponse:
        values |= {"role": caller.role if caller else None, "kinds": LABEL_KINDS}
        return templates.TemplateResponse(request, name, values, status_code=status, headers=PAGE_HEADERS)

    _auth_routes(ctx, router, render)

    @router.get("/")
    def wall(request: Request) -> Response:
        if (caller := page_caller(request)) is None:
            return _to_login(request)
        return render(request, "wall.html", caller, cameras=ctx.store.cameras())

    @router.get("/review")
    def review(request: Request, camera: str | None = None, cursor: str | None = None) -> Response:
        if (caller := page_caller(request)) is None:
            return _to_login(request)
        try:
            page = ctx.store.page(AlertQuery(camera=camera or None, cursor=cursor or None, limit=30))
        except ValueError as exc:
            return render(request, "review.html", caller, 422, page=None, camera=None, error=str(exc), cameras=[])
        ids = [c.camera_id for c in ctx.store.cameras()]
        return render(request, "review.html", caller, page=page, camera=camera, error=None, cameras=ids)

    _camera_routes(ctx, router, render)
    return router


def _camera_routes(ctx: ApiContext, router: APIRouter, render: Any) -> None:
    """A camera's page, its zone editor and the alert-card fragment of the live updates."""

    @router.get("/cameras/{camera_id}")
    def camera_page(request: Request, camera_id: CameraId) -> Response:
        if (caller := page_caller(request)) is None:
            return _to_login(request)
        view = ctx.store.camera(camera_id)
        page = ctx.store.page(AlertQuery(camera=camera_id, limit=20))
        return render(request, "camera.html", caller, camera_id=camera_id, camera=view, page=page)

    @router.get("/cameras/{camera_id}/zones")
    def zones_page(request: Request, camera_id: CameraId) -> Response:
        if (caller := page_caller(request)) is None:
            return _to_login(request)
        return render(request, "zones.html", caller, camera_id=camera_id, zones_json=json.dumps(_zones_of(ctx, camera_id)))

    @router.get("/console/cards/{alert_id}")
    def card(request: Request, alert_id: AlertId) -> Response:
        if (caller := page_caller(request)) is None:
            raise HTTPException(401, "sign in at /login")
        detail = ctx.store.alert(alert_id)
        if detail is None:
            raise HTTPException(404, f"no alert {alert_id!r} is known")
        last = detail.changes[-1]
        item = AlertItem(stream_id=last.stream_id, alert=last.alert, **detail.model_dump(include=_LINKS))
        return render(request, "_card.html", caller, it=item)


def _auth_routes(ctx: ApiContext, router: APIRouter, render: Any) -> None:
    """Sign-in and sign-out: the token goes into an HttpOnly, SameSite=Strict cookie."""

    @router.get("/login")
    def login_form(request: Request, next: str | None = None) -> Response:  # noqa: A002 - the query's name
        return render(request, "login.html", page_caller(request), next=safe_next(next), error=None)

    @router.post("/login")
    async def login(request: Request) -> Response:
        form = await _small_form(request)
        token, target = form.get("token", "").strip(), safe_next(form.get("next"))
        role = ctx.tokens.role_of(token) if token and same_origin(request) else None
        if role is None:
            metrics.AUTH_FAILURES.labels("console").inc()
            log.warning("console sign-in refused (token %s)", short_hash(token) if token else "empty")
            return render(request, "login.html", None, 401, next=target, error="That token is not in the tokens file.")
        log.info("console sign-in: %s token %s", role, short_hash(token))
        resp = RedirectResponse(target, status_code=303, headers=PAGE_HEADERS)
        secure = ctx.settings.cookie_secure if ctx.settings.cookie_secure is not None else request.url.scheme == "https"
        resp.set_cookie(COOKIE, cookie_value(token), max_age=ctx.settings.session_max_age_s, httponly=True,
                        samesite="strict", secure=secure, path="/")  # fmt: skip
        return resp

    @router.post("/logout")
    def logout(request: Request) -> Response:
        resp = RedirectResponse("/login", status_code=303, headers=PAGE_HEADERS)
        resp.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return resp


def _zones_of(ctx: ApiContext, camera_id: str) -> dict[str, list]:
    """The camera's zones in the cameras file (``VIGIL_CAMERAS_FILE``), or none when unset or unreadable."""
    from vigil.shared.cameras import ConfigError

    if not CAMERA_ID.match(camera_id):
        return {"include": [], "exclude": []}
    try:
        zones = ctx.settings.cameras.per_camera("zones").get(camera_id)
    except (ConfigError, OSError) as exc:
        log.warning("zone editor: cannot read the cameras file: %s", exc)
        zones = None
    return zones.model_dump() if zones is not None else {"include": [], "exclude": []}


async def _small_form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body of at most ``MAX_FORM_BYTES``; 413 / 415 otherwise."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        raise HTTPException(415, "send the form as application/x-www-form-urlencoded")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise HTTPException(413, f"a sign-in form is at most {MAX_FORM_BYTES} bytes")
    try:
        fields = parse_qs(body.decode(), max_num_fields=10, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise HTTPException(422, "the form is not valid UTF-8 form data") from None
    return {k: v[0] for k, v in fields.items() if v}
