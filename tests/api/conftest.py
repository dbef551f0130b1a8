"""Fixtures of the `vigil api` tests: tokens, alerts written by the real scorer core and sink into the real
Redis, and the API over them (FastAPI's TestClient, or uvicorn on a free port)."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

VIEWER = "viewer-token-" + "v" * 20
OPERATOR = "operator-token-" + "o" * 20
FAST = {"grace_frames": 100, "fading_factor": 0.03}
EVENTS = {"k": 3, "n": 5, "m": 5, "min_duration_s": 0.2, "cooldown_s": 1.0, "update_interval_s": 0.5}


def auth(token: str) -> dict[str, str]:
    """The Authorization header of a token."""
    return {"Authorization": f"Bearer {token}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Scored:
    """Cameras the real scorer core scored into Redis: ``a`` has two alerts, ``b`` one."""

    a: str
    b: str
    since_ms: int
    until_ms: int


def score_into_redis(redis_settings, cameras: dict[str, list[tuple[int, int]]], n: int = 700) -> None:  # noqa: ANN001
    """Run ScorerCore (with its RedisSink) on scripted score messages: alerts, snapshots, camera hashes."""
    from vigil.services.scorer.core import ScorerCore
    from vigil.services.scorer.settings import ScorerSettings
    from vigil.services.scorer.sink import RedisSink, SinkOptions
    from vigil.shared.kafka import KafkaRecord
    from vigil.shared.scorer_params import EventParams, ScoringParams
    from vigil.tools.simulator import score_messages, scripted

    async def dead(letter, key):  # noqa: ANN001, ANN202
        raise AssertionError(letter)

    async def feed() -> None:
        settings = ScorerSettings(scoring=ScoringParams(**FAST), events=EventParams(**EVENTS))
        sink = RedisSink(redis_settings.async_client(), SinkOptions(retry_min_s=0.05, retry_max_s=0.2))
        table: dict[str, bytes] = {}
        core = ScorerCore(settings, sink, table.get, table.__setitem__, dead)
        for seed, (cam, spans) in enumerate(cameras.items()):
            values = score_messages(cam, scripted(n, spans, seed=seed), heatmap=True, t0_ns=time.time_ns() - 10**11)
            records = [KafkaRecord("scores", 0, i, cam.encode(), v) for i, v in enumerate(values)]
            for i in range(0, len(records), 20):  # batches a few ms apart: an alert's changes have distinct stream times
                await core.handle(records[i : i + 20])
                await asyncio.sleep(0.003)
        await sink.client.aclose()

    asyncio.run(feed())


@pytest.fixture(scope="session")
def scored(redis_settings) -> Scored:  # noqa: ANN001
    token = uuid.uuid4().hex[:8]
    a, b = f"api-a-{token}", f"api-b-{token}"
    since = int(time.time() * 1000) - 1
    score_into_redis(redis_settings, {a: [(200, 239), (400, 459)], b: [(300, 349)]})
    return Scored(a, b, since, int(time.time() * 1000) + 1)


@pytest.fixture(scope="session")
def tokens_file(tmp_path_factory) -> Path:  # noqa: ANN001
    path = tmp_path_factory.mktemp("api") / "tokens"
    path.write_text(f"# test tokens\nviewer:{VIEWER}\noperator:{OPERATOR}\n")
    return path


@pytest.fixture(scope="session")
def api_settings(redis_settings, tokens_file):  # noqa: ANN001, ANN201
    from vigil.services.api.settings import ApiSettings

    return ApiSettings(redis=redis_settings, tokens_file=tokens_file, port=0, sse_keepalive_s=0.5)


@pytest.fixture(scope="session")
def service(api_settings):  # noqa: ANN001, ANN201
    """The API's service object (context and app) of the session: one lazily loaded model for every test."""
    from vigil.services.api.transport import build_service

    svc = build_service(api_settings)
    yield svc
    svc.ctx.scorer.close()


@pytest.fixture
def client(service) -> Iterator:  # noqa: ANN001
    """FastAPI's TestClient over the session's app (lifespan run)."""
    from fastapi.testclient import TestClient

    service.ctx.stopping = False
    with TestClient(service.server.config.app, raise_server_exceptions=False) as c:
        yield c
