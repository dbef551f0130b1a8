"""Fixtures of the end-to-end tests (see e2e_harness.py for what they run)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_harness import Pipeline

from vigil.tools.launcher import LocalStack


@pytest.fixture(scope="session")
def private_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A Kafka + Redis of the e2e tests' own (started with infra/local/stack.sh)."""
    stack = LocalStack(tmp_path_factory.mktemp("e2e-stack"))
    try:
        stack.up()
    except RuntimeError as exc:
        pytest.fail(f"could not start the private Kafka/Redis for e2e tests (run `make install` first): {exc}")
    yield stack
    stack.down()


@pytest.fixture
def pipeline(private_stack: LocalStack, tmp_path: Path) -> Iterator[Pipeline]:
    """A fresh pipeline on the private stack: own topics and groups, empty Redis."""
    from vigil.shared.kafka import ensure_topics
    from vigil.shared.settings import KafkaSettings

    p = Pipeline(private_stack, tmp_path)
    p.redis().flushall()
    kafka = KafkaSettings(bootstrap_servers=private_stack.env()["VIGIL_KAFKA_BOOTSTRAP_SERVERS"])
    ensure_topics(kafka, {name: 4 for name in p.topics.values()})
    yield p
    p.stop_all()


