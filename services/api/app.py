"""The FastAPI application of `vigil api`: routes under ``/v1``, bearer-token roles, error handlers.

Every route reads its collaborators from one :class:`ApiContext` on ``app.state``; nothing is created
at import time. A caller proves its role with ``Authorization: Bearer <token>`` or, in the browser, with
the console's HttpOnly ``SameSite=Strict`` cookie (set by ``POST /login``, :mod:`~vigil.services.api.console`);
a state-changing request authenticated by the cookie must also carry the console's ``X-Vigil-Console``
header and, when it sends ``Origin``, come from this host (CSRF). Sync routes (Redis reads) run in Starlette's thread pool; ``/v1/events`` and
``/v1/score`` are async (the clip is scored in :class:`~vigil.services.api.scoring.ClipScorer`'s pool).
Every refused input is a 4xx with a ``detail`` that says why; an unexpected error is logged with its
traceback and answered with a bare 500; Redis being down is a 503.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from vigil.services.api import metrics
from vigil.services.api.auth import Caller, Role, Tokens, allows, short_hash
from vigil.services.api.core import (
    ALERT_ID,
    CAMERA_ID,
    MAX_PAGE,
    MAX_TIMELINE,
    AlertDetail,
    AlertPage,
    AlertQuery,
    CameraView,
    EventKind,
    Evidence,
    Label,
    RangeError,
    ScoreResult,
    TimelinePoint,
    clip_type,
    content_range,
    parse_range,
)
from vigil.services.api.events import SSE_CONNECTED, SSE_KEEPALIVE, AlertHub, sse_message
from vigil.services.api.scoring import ClipScorer, UploadError, receive_upload
from vigil.services.api.settings import ApiSettings
from vigil.services.api.store import AlertStore
from vigil.shared.telemetry import Heartbeat

log = logging.getLogger(__name__)


@dataclass
class ApiContext:
    """What the routes use: settings, the Redis store, the live-alert hub, the clip scorer and the tokens."""

    settings: ApiSettings
    store: AlertStore
    hub: AlertHub
    scorer: ClipScorer
    tokens: Tokens
    heartbeat: Heartbeat = field(default_factory=Heartbeat)
    stopping: bool = False


def context(request: Request) -> ApiContext:
    """The application's :class:`ApiContext`."""
    return request.app.state.ctx


_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <token>` (a line of VIGIL_API_TOKENS_FILE)")
COOKIE = "vigil_session"
"""The console's cookie: the token, base64url-encoded (HttpOnly, SameSite=Strict)."""
CSRF_HEADER = "X-Vigil-Console"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def cookie_value(token: str) -> str:
    """The cookie's value for a token (base64url: any token character survives the cookie syntax)."""
    return base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")


def cookie_token(request: Request) -> str | None:
    """The token in the console's cookie, or None (absent or not base64url)."""
    raw = request.cookies.get(COOKIE)
    if not raw or len(raw) > 1024:
        return None
    try:
        return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def same_origin(request: Request) -> bool:
    """Whether the request's ``Origin`` (when sent) names this host (a reverse proxy may change the scheme)."""
    origin = request.headers.get("origin")
    return origin is None or urlsplit(origin).netloc.lower() == request.headers.get("host", "").lower()


def _token_of(request: Request, cred: HTTPAuthorizationCredentials | None) -> tuple[str, bool]:
    """The presented token and whether it came from the cookie; 401 when there is none."""
    if cred is not None and cred.scheme.lower() == "bearer" and cred.credentials:
        return cred.credentials, False
    token = None if request.headers.get("authorization") else cookie_token(request)
    if token is None:
        metrics.AUTH_FAILURES.labels("missing").inc()
        raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    if request.method not in SAFE_METHODS and (request.headers.get(CSRF_HEADER) != "1" or not same_origin(request)):
        metrics.AUTH_FAILURES.labels("csrf").inc()
        raise HTTPException(403, f"a change made with the console's cookie needs the {CSRF_HEADER} header and "
                                 "this site's origin (cross-site request refused)")  # fmt: skip
    return token, True


def _require(needed: Role) -> Any:
    """A dependency that admits tokens of role ``needed`` or above: 401 without a valid token, 403 below."""

    def check(request: Request, cred: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Caller:
        token, _ = _token_of(request, cred)
        role = context(request).tokens.role_of(token)
        if role is None:
            metrics.AUTH_FAILURES.labels("unknown").inc()
            log.warning("refused an unknown token %s on %s", short_hash(token), request.url.path)
            raise HTTPException(401, "unknown bearer token", headers={"WWW-Authenticate": "Bearer"})
        if not allows(role, needed):
            metrics.AUTH_FAILURES.labels("role").inc()
            raise HTTPException(403, f"this needs the {needed} role; the token is a {role}'s")
        return Caller(role, short_hash(token))

    return Depends(check)


Viewer = Annotated[Caller, _require("viewer")]
Operator = Annotated[Caller, _require("operator")]
Ctx = Annotated[ApiContext, Depends(context)]
AlertId = Annotated[str, Path(max_length=200, pattern=ALERT_ID.pattern, description="`<camera>:<start_seq>:<start ms>`")]
CameraId = Annotated[str, Path(max_length=64, pattern=CAMERA_ID.pattern)]

cameras = APIRouter(prefix="/v1/cameras", tags=["cameras"])
alert_routes = APIRouter(prefix="/v1/alerts", tags=["alerts"])
live = APIRouter(prefix="/v1", tags=["live"])
scoring = APIRouter(prefix="/v1", tags=["scoring"])


@cameras.get("", response_model=list[CameraView], summary="Every camera: status, mode, score, threshold, model, open alert")
def list_cameras(ctx: Ctx, _: Viewer) -> list[CameraView]:
    return ctx.store.cameras()


@cameras.get("/{camera_id}", response_model=CameraView, summary="One camera", responses={404: {"description": "Unknown camera"}})
def get_camera(camera_id: CameraId, ctx: Ctx, _: Viewer) -> CameraView:
    view = ctx.store.camera(camera_id)
    if view is None:
        raise HTTPException(404, f"no camera {camera_id!r} has been scored (or its record expired)")
    return view


@cameras.get("/{camera_id}/timeline", response_model=list[TimelinePoint], summary="The camera's score timeline, oldest first")
def get_timeline(
    camera_id: CameraId, ctx: Ctx, _: Viewer,
    since: Annotated[str | None, Query(max_length=64, description="Points captured at or after: 30m, 2h, 1d or ISO")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_TIMELINE, description="The latest this many points (one a second at most)")] = 600,
) -> list[TimelinePoint]:  # fmt: skip
    since_ms = _time(since, "since")
    return ctx.store.timeline(camera_id, None if since_ms is None else since_ms * 1_000_000, limit)


@cameras.get("/{camera_id}/frame", summary="The camera's latest frame (JPEG, refreshed every few seconds)",
             responses={200: {"content": {"image/jpeg": {}}}, 404: {"description": "No recent frame"}})  # fmt: skip
def get_frame(camera_id: CameraId, ctx: Ctx, _: Viewer) -> Response:
    jpeg = ctx.store.latest_frame(camera_id)
    if jpeg is None:
        raise HTTPException(404, f"camera {camera_id!r} has no recent frame (the evidence service writes one every few seconds)")
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


class ZonesIn(BaseModel):
    """Include / exclude polygons drawn in the console, in fractions of the frame."""

    include: list[list[tuple[float, float]]] = Field(default_factory=list, max_length=32)
    exclude: list[list[tuple[float, float]]] = Field(default_factory=list, max_length=32)


class ZonesOut(BaseModel):
    """The zones, validated by the cameras file's own model, and the YAML to paste into it."""

    camera_id: str
    zones: dict[str, list[list[tuple[float, float]]]]
    yaml: str


@cameras.post("/{camera_id}/zones/check", response_model=ZonesOut, summary="Validate zones and get their YAML (changes nothing)")
def check_zones(camera_id: CameraId, body: ZonesIn, _: Viewer) -> ZonesOut:
    from pydantic import ValidationError

    from vigil.services.api.core import zones_yaml
    from vigil.shared.cameras import Zones

    try:
        zones = Zones.model_validate(body.model_dump())
    except ValidationError as exc:
        why = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}".lstrip(": ") for e in exc.errors()[:5])
        raise HTTPException(422, why.replace("Value error, ", "")) from None
    return ZonesOut(camera_id=camera_id, zones=zones.model_dump(), yaml=zones_yaml(camera_id, zones))


def _time(text: str | None, name: str) -> int | None:
    from vigil.services.scorer.alerts import parse_since

    try:
        return None if text is None else parse_since(text)
    except ValueError:
        raise HTTPException(422, f"{name} must be like 30m, 2h, 1d or an ISO time. Received: {text[:60]!r}") from None


@alert_routes.get("", response_model=AlertPage, summary="Alerts, newest first, each as its latest change")
def list_alerts(
    ctx: Ctx, _: Viewer,
    camera: Annotated[str | None, Query(max_length=64, description="Only this camera")] = None,
    since: Annotated[str | None, Query(max_length=64, description="Latest change at or after: 30m, 2h, 1d or ISO")] = None,
    until: Annotated[str | None, Query(max_length=64, description="Latest change at or before: 30m, 2h, 1d or ISO")] = None,
    event: Annotated[EventKind | None, Query(description="Only alerts whose latest change is this event")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=45, description="`next_cursor` of the previous page")] = None,
) -> AlertPage:  # fmt: skip
    try:
        q = AlertQuery(camera, _time(since, "since"), _time(until, "until"), event, limit, cursor)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return ctx.store.page(q)


@alert_routes.get("/{alert_id}", response_model=AlertDetail, summary="An alert with all its changes")
def get_alert(alert_id: AlertId, ctx: Ctx, _: Viewer) -> AlertDetail:
    detail = ctx.store.alert(alert_id)
    if detail is None:
        raise HTTPException(404, f"no alert {alert_id!r} is known (or it left the stream)")
    return detail


@alert_routes.get("/{alert_id}/snapshot", summary="The alert's JPEG at its peak: the real frame, else the heat map",
                  responses={200: {"content": {"image/jpeg": {}}}, 404: {"description": "No snapshot (expired)"}})  # fmt: skip
def get_snapshot(
    alert_id: AlertId, ctx: Ctx, _: Viewer,
    kind: Annotated[Literal["best", "frame", "heatmap"], Query(description="best: the real frame with the error map "
                    "and box (evidence service) when there is one, else the scorer's heat map")] = "best",
) -> Response:  # fmt: skip
    found = ctx.store.snapshot(alert_id, kind)
    if found is None:
        raise HTTPException(404, f"alert {alert_id!r} has no {'' if kind == 'best' else kind + ' '}snapshot "
                                 "(none was written, or it expired)")  # fmt: skip
    jpeg, source = found
    # a preliminary frame snapshot is replaced by the final one: revalidate rather than cache for long
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, no-cache", "X-Vigil-Snapshot": source})


@alert_routes.get("/{alert_id}/evidence", response_model=Evidence, summary="What the evidence service wrote for the alert")
def get_evidence(alert_id: AlertId, ctx: Ctx, _: Viewer) -> Evidence:
    found = ctx.store.evidence(alert_id)
    if found is None:
        raise HTTPException(404, f"alert {alert_id!r} has no evidence (not written yet, or it expired)")
    return found


@alert_routes.get("/{alert_id}/clip", summary="The alert's clip (MP4 H.264 or WebM), with HTTP Range requests",
                  responses={200: {"content": {"video/mp4": {}, "video/webm": {}}}, 206: {"description": "Part (Range)"},
                             404: {"description": "No clip"}, 416: {"description": "Bad or unsatisfiable Range"}})  # fmt: skip
def get_clip(alert_id: AlertId, request: Request, ctx: Ctx, _: Viewer) -> Response:
    header = request.headers.get("range")
    try:
        rng = parse_range(header) if header is not None else None
    except RangeError as exc:
        raise HTTPException(416, str(exc)) from None
    found = ctx.store.clip(alert_id, rng)
    if found is None:
        raise HTTPException(404, f"alert {alert_id!r} has no clip (not written yet, or it expired)")
    body, length, mime, version = found
    etag = f'"{version}"'
    head = {"Accept-Ranges": "bytes", "ETag": etag, "Cache-Control": "private, no-cache"}
    if_range = request.headers.get("if-range")
    if rng is not None and if_range is not None and if_range != etag:  # changed since the client's first part
        rng, found = None, ctx.store.clip(alert_id, None)
        if found is None:
            raise HTTPException(404, f"alert {alert_id!r} has no clip (it expired)")
        body, length, mime, etag = found[0], found[1], found[2], f'"{found[3]}"'
        head["ETag"] = etag
    if rng is None:
        metrics.CLIP_BYTES.inc(len(body))
        return Response(body, media_type=clip_type(mime, body[:16]), headers=head)
    try:
        first, last = content_range(rng, length)
    except RangeError as exc:
        raise HTTPException(416, str(exc), headers={"Content-Range": f"bytes */{length}"}) from None
    metrics.CLIP_BYTES.inc(len(body))
    head |= {"Content-Range": f"bytes {first}-{last}/{length}"}
    return Response(body, status_code=206, media_type=clip_type(mime, b"" if first else body[:16]), headers=head)


class LabelIn(BaseModel):
    """A label for an alert, as `vigil alerts label` takes it."""

    kind: str = Field(min_length=1, max_length=40, description="true_positive, false_positive, bike, vehicle, skater, ...")
    by: str | None = Field(None, max_length=100, description="Who labels (default: the token's role and hash)")
    note: str = Field("", max_length=2000)


@alert_routes.get("/{alert_id}/label", response_model=Label, summary="The alert's label")
def get_label(alert_id: AlertId, ctx: Ctx, _: Viewer) -> Label:
    found = ctx.store.label(alert_id)
    if found is None:
        raise HTTPException(404, f"alert {alert_id!r} has no label")
    return found


@alert_routes.put("/{alert_id}/label", response_model=Label, summary="Label an alert (operator)")
def put_label(alert_id: AlertId, body: LabelIn, ctx: Ctx, caller: Operator) -> Label:
    if not ctx.store.known(alert_id):
        raise HTTPException(404, f"no alert {alert_id!r} is known: only published alerts can be labelled")
    try:
        stored = ctx.store.set_label(alert_id, body.kind, body.by or f"{caller.role}:{caller.token_hash}", body.note)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    log.info("alert %s labelled %s by %s (token %s)", alert_id, stored.kind, stored.by, caller.token_hash)
    return stored


@live.get("/events", summary="Server-sent events: every alert change (`alert`) and evidence written (`evidence`)",
          response_class=StreamingResponse, responses={200: {"content": {"text/event-stream": {}}}})  # fmt: skip
async def events(ctx: Ctx, _: Viewer) -> StreamingResponse:
    try:
        queue = await ctx.hub.add()
    except OverflowError as exc:
        raise HTTPException(503, str(exc)) from None
    except TimeoutError:
        raise HTTPException(503, "Redis did not confirm the alert subscription; try again") from None
    return StreamingResponse(_stream(ctx, queue), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})  # fmt: skip


async def _stream(ctx: ApiContext, queue: asyncio.Queue[tuple[str, str]]) -> AsyncIterator[str]:
    """The client's events until it leaves or the server stops, with a keep-alive comment when quiet."""
    keepalive = ctx.settings.sse_keepalive_s
    try:
        yield SSE_CONNECTED
        quiet_since = time.monotonic()
        while not ctx.stopping:
            try:
                data = await asyncio.wait_for(queue.get(), min(1.0, keepalive))  # wakes to notice a shutdown
            except TimeoutError:
                if time.monotonic() - quiet_since >= keepalive:
                    quiet_since = time.monotonic()
                    yield SSE_KEEPALIVE
                continue
            quiet_since = time.monotonic()
            yield sse_message(*data)
    finally:
        ctx.hub.remove(queue)


@scoring.post("/score", response_model=ScoreResult, summary="Score an uploaded clip through the live path (operator)",
              openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                  "type": "object", "required": ["file"], "properties": {"file": {"type": "string", "format": "binary"}}}}}}},
              responses={413: {"description": "Too large"}, 415: {"description": "Not multipart"},
                         422: {"description": "Not a video, too long, or no `file` field"}})  # fmt: skip
async def score(request: Request, ctx: Ctx, caller: Operator) -> ScoreResult:
    s = ctx.settings
    with tempfile.TemporaryDirectory(prefix="vigil-api-", dir=s.upload_dir) as tmp:
        try:
            path = await receive_upload(request, s.max_upload_bytes, FsPath(tmp))
            result = await ctx.scorer.score(path)
        except UploadError as exc:
            metrics.UPLOADS.labels(str(exc.status)).inc()
            log.info("refused a clip from token %s: %s %s", caller.token_hash, exc.status, exc)
            raise HTTPException(exc.status, str(exc)) from None
    metrics.UPLOADS.labels("200").inc()
    log.info("scored a clip of %d frames in %.1fs for token %s", len(result.frames), result.seconds, caller.token_hash)
    return result


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    """An error no route expected: logged with its traceback, answered without internals."""
    metrics.ERRORS.inc()
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": "internal error (logged)"}, status_code=500)


async def _redis_down(request: Request, exc: Exception) -> JSONResponse:
    log.warning("Redis unavailable on %s: %s", request.url.path, exc)
    return JSONResponse({"detail": "Redis is unavailable; try again"}, status_code=503, headers={"Retry-After": "5"})


class RequestMetrics:
    """ASGI middleware: count and time requests by route template (bounded label values); adds ``nosniff``."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0, status = time.perf_counter(), [500]

        async def _send(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                headers = message.setdefault("headers", [])
                if not any(k.lower() == b"x-content-type-options" for k, _ in headers):
                    headers.append((b"x-content-type-options", b"nosniff"))  # every answer: served bytes are never sniffed
                route = getattr(scope.get("route"), "path", "other")
                metrics.REQUEST_SECONDS.labels(route).observe(time.perf_counter() - t0)
            await send(message)

        try:
            await self.app(scope, receive, _send)
        finally:
            route = getattr(scope.get("route"), "path", "other")
            metrics.REQUESTS.labels(route, scope.get("method", ""), str(status[0])).inc()


def create_app(ctx: ApiContext) -> FastAPI:
    """The application over ``ctx`` (OpenAPI at /openapi.json, docs at /docs)."""
    import redis
    from fastapi.middleware.cors import CORSMiddleware

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        beat = asyncio.get_running_loop().create_task(_beat(ctx), name="vigil-api-heartbeat")
        try:
            yield
        finally:
            ctx.stopping = True
            beat.cancel()
            await ctx.hub.close()

    app = FastAPI(title="Vigil API", version="1", lifespan=lifespan,
                  description="Cameras, alerts with evidence, labels, live alert changes and clip scoring. "
                  "Every route needs `Authorization: Bearer <token>`; see docs/api.md.")  # fmt: skip
    app.state.ctx = ctx
    for router in (cameras, alert_routes, live, scoring):
        app.include_router(router)
    if ctx.settings.console:
        from fastapi.staticfiles import StaticFiles

        from vigil.services.api.console import build_console, package_dir

        app.include_router(build_console(ctx))
        app.mount("/static", StaticFiles(directory=package_dir("static")), name="static")
    app.add_exception_handler(redis.ConnectionError, _redis_down)
    app.add_exception_handler(redis.TimeoutError, _redis_down)
    app.add_exception_handler(Exception, _unexpected)
    if ctx.settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=ctx.settings.cors_origins, allow_methods=["GET", "PUT", "POST"],
                           allow_headers=["Authorization", "Content-Type"])  # fmt: skip
    app.add_middleware(RequestMetrics)
    return app


async def _beat(ctx: ApiContext) -> None:
    """Beat the heartbeat while the event loop runs (a blocked loop stops it: /healthz fails)."""
    while True:
        ctx.heartbeat.beat()
        await asyncio.sleep(1.0)
