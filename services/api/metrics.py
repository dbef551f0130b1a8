"""Prometheus metrics of `vigil api`."""

from __future__ import annotations

from vigil.shared.telemetry import counter, gauge, histogram

REQUESTS = counter("vigil_api_requests", "HTTP requests by route template, method and status", ["route", "method", "status"])
REQUEST_SECONDS = histogram("vigil_api_request_seconds", "Time to answer a request (until the headers of a stream)", ["route"])
AUTH_FAILURES = counter("vigil_api_auth_failures", "Refused requests", ["reason"])
SSE_CLIENTS = gauge("vigil_api_sse_clients", "Clients following /v1/events")
SSE_DROPPED = counter("vigil_api_sse_dropped", "Alert changes dropped for a slow /v1/events client (its oldest)")
SCORE_SECONDS = histogram("vigil_api_score_seconds", "Time to decode and score one uploaded clip",
                          buckets=(0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 600))  # fmt: skip
UPLOADS = counter("vigil_api_uploads", "POST /v1/score uploads by outcome", ["result"])
ERRORS = counter("vigil_api_errors", "Unexpected errors answered with a 500")
DROPPED = counter("vigil_api_dropped", "Records from Redis skipped as unreadable (timeline points, evidence messages)", ["reason"])
CLIP_BYTES = counter("vigil_api_clip_bytes", "Bytes of alert clips served (ranges included)")
