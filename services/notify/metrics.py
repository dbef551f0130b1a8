"""Prometheus metrics of `vigil notify`.

``channel`` is ``mqtt`` or ``webhook``; ``target`` is the MQTT broker (``mqtt``) or the webhook's name from the
webhooks file (never its URL). Labels are bounded: the webhooks file holds at most 100 entries.
"""

from __future__ import annotations

from vigil.shared.telemetry import counter, gauge, histogram

DELIVERY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

ENTRIES = counter("vigil_notify_alert_entries", "Alert stream entries read, by result (ok, malformed, claimed, suppressed: not delivered)",
                  ["result"])  # fmt: skip
DELIVERED = counter("vigil_notify_delivered", "Messages delivered (MQTT PUBACK, webhook 2xx)", ["channel", "target"])
FAILED = counter("vigil_notify_failed_attempts", "Delivery attempts that failed (each retry that follows counts in "
                 "retried)", ["channel", "target"])  # fmt: skip
RETRIED = counter("vigil_notify_retried", "Delivery retries", ["channel", "target"])
DEAD = counter("vigil_notify_dead_lettered", "Deliveries written to the dead letters, by reason (exhausted, "
               "rejected, queue_full, no_puback, malformed)", ["channel", "target", "reason"])  # fmt: skip
DROPPED = counter("vigil_notify_dropped", "Deliveries not attempted because a queue was full (dead-lettered)",
                  ["channel", "target"])  # fmt: skip
LATENCY = histogram("vigil_notify_delivery_seconds", "Alert stream entry (XADD) to MQTT PUBACK / webhook 2xx",
                    ["channel"], buckets=DELIVERY_BUCKETS)  # fmt: skip
END_TO_END = histogram("vigil_notify_end_to_end_seconds", "Capture of the frame that caused the alert change to "
                       "MQTT PUBACK / webhook 2xx", ["channel"], buckets=DELIVERY_BUCKETS)  # fmt: skip
INFLIGHT = gauge("vigil_notify_inflight_entries", "Alert stream entries being delivered")
QUEUED = gauge("vigil_notify_queued", "Deliveries waiting, per target", ["channel", "target"])
MQTT_CONNECTED = gauge("vigil_notify_mqtt_connected", "1 while connected to the MQTT broker")
STATUS = counter("vigil_notify_camera_status_published", "Retained camera status / state messages published")
CAMERAS_SKIPPED = counter("vigil_notify_cameras_skipped", "Camera hashes not published (invalid id, over max_cameras)")
LOOP_FAILURES = counter("vigil_notify_loop_failures", "Loop turns that failed, mostly on a Redis call (retried after "
                        "retry_s; what was read and not handed on is claimed again after claim_idle_s)")  # fmt: skip
