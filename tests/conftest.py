"""Fixtures shared by the whole suite.

Integration fixtures talk to the real Kafka and Redis started by `make up` (infra/local/stack.sh).
If a server is not running, the test FAILS with the command that starts it; it never skips.
"""

from __future__ import annotations

import os
import shlex
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("VIGIL_STATE_DIR", REPO / ".state"))


def _load_local_env() -> None:
    """Adopt the settings written by `make up` (.state/local.env) unless the environment sets them."""
    env_file = STATE / "local.env"
    if not env_file.exists():
        return
    for line in env_file.read_text().splitlines():
        parts = shlex.split(line)
        if len(parts) == 2 and parts[0] == "export" and "=" in parts[1]:
            key, value = parts[1].split("=", 1)
            os.environ.setdefault(key, value)


_load_local_env()


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def ped2_dir() -> Path:
    """The Ped2 clips shipped in the checkout (``data/ped2-mini``: Test001, Test002, Train015, Train016).

    Integration tests read only these, so ``make test`` behaves the same in a bare clone and in CI; the full
    set (``$VIGIL_PED2_DIR``) is for evaluations and benchmarks.
    """
    path = REPO / "data" / "ped2-mini"
    if not (path / "labels_frame_ped2.json").exists():
        pytest.fail(f"the shipped Ped2 mini set is missing at {path}: restore it with git checkout -- data/ped2-mini")
    return path


@pytest.fixture(scope="session")
def kafka_settings():  # noqa: ANN201
    """KafkaSettings for the running local broker; fails with the start command if it is down."""
    from vigil.shared.settings import KafkaSettings

    settings = KafkaSettings()
    host, _, port = settings.servers[0].rpartition(":")
    if not _reachable(host, int(port)):
        pytest.fail(f"Kafka is not running at {settings.bootstrap_servers}. Start it with: make up", pytrace=False)
    return settings


@pytest.fixture(scope="session")
def redis_settings():  # noqa: ANN201
    """RedisSettings for the running local Redis; fails with the start command if it is down."""
    import redis

    from vigil.shared.settings import RedisSettings

    settings = RedisSettings()
    try:
        settings.client().ping()
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        pytest.fail(f"Redis is not running at {settings.url} ({exc}). Start it with: make up", pytrace=False)
    return settings


@pytest.fixture
def redis_client(redis_settings):  # noqa: ANN001, ANN201
    """A redis.Redis client on the local server (keys are the test's own business)."""
    client = redis_settings.client()
    yield client
    client.close()


@pytest.fixture
def unique_name() -> Callable[[str], str]:
    """Make a name unique to this test run: unique_name('frames') -> 'test.frames.3f2a...'."""
    token = uuid.uuid4().hex[:10]
    return lambda base: f"test.{base}.{token}"


@pytest.fixture
def make_topics(kafka_settings, unique_name) -> Iterator[Callable[..., dict[str, str]]]:  # noqa: ANN001
    """Create this test's own topics: make_topics(frames=4, scores=4) -> {'frames': 'test.frames.<id>', ...}.

    The topics are deleted after the test.
    """
    from vigil.shared.kafka import delete_topics, ensure_topics

    created: list[str] = []

    def _make(**partitions: int) -> dict[str, str]:
        names = {base: unique_name(base) for base in partitions}
        ensure_topics(kafka_settings, {names[b]: n for b, n in partitions.items()})
        created.extend(names.values())
        return names

    yield _make
    if created:
        delete_topics(kafka_settings, created)


@pytest.fixture
def topic_settings(make_topics):  # noqa: ANN001, ANN201
    """TopicSettings pointing at this test's own four Vigil topics (4 partitions each)."""
    from vigil.shared.settings import TopicSettings

    t = make_topics(frames=4, scores=4, camera_status=2, dlq=2)
    return TopicSettings(frames=t["frames"], scores=t["scores"], camera_status=t["camera_status"], dlq=t["dlq"], partitions=4)
