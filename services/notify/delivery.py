"""Records that travel between the service loop and the delivery threads of `vigil notify`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

Channel = Literal["mqtt", "webhook"]
Reason = Literal["", "exhausted", "rejected", "queue_full", "no_puback", "abandoned"]
"""Why a delivery did not succeed: ``exhausted`` (the last retry failed), ``rejected`` (a 4xx / a broker refusal:
not retried), ``queue_full`` (dropped before any attempt), ``no_puback`` (MQTT: no acknowledgement within the
deadline), ``abandoned`` (shutdown came first: the entry stays pending and is delivered again after a restart)."""


@dataclass(frozen=True)
class Delivery:
    """One alert change to deliver: the stream entry it came from, its payload, and the times it is measured from.

    Attributes:
        entry_id: The ``vigil:alerts`` entry (acknowledged once every delivery of it is resolved).
        alert_id: The alert.
        camera_id: Its camera.
        event: ``open``, ``update`` or ``close``.
        body: The JSON payload (:func:`~vigil.services.notify.core.alert_payload`).
        entry_ns: When Redis added the entry (ns), or None.
        capture_ns: Capture time of the frame that caused the change (ns), or None.
    """

    entry_id: str
    alert_id: str
    camera_id: str
    event: str
    body: bytes
    entry_ns: int | None = None
    capture_ns: int | None = None


@dataclass(frozen=True)
class Result:
    """How one delivery of one entry ended, handed to the service loop (which acknowledges or dead-letters)."""

    channel: Channel
    target: str
    """``mqtt`` or the webhook's name."""
    delivery: Delivery
    reason: Reason
    """Empty when delivered."""
    detail: str = ""
    """What went wrong, for the dead letter and the log (never a secret or a URL's path)."""
    attempts: int = 1
    done_ns: int = field(default_factory=time.time_ns)
    topic: str = ""
    """The MQTT topic (to replay a dead letter)."""

    @property
    def ok(self) -> bool:
        """Whether it was delivered."""
        return not self.reason
