"""The outbox's Kafka publisher (confluent-kafka), for banks that run Kafka instead of NATS.

Same contract as :class:`~callvet.core.outbox_nats.NatsPublisher`: ``publish`` returns only when the
broker acknowledged every event of the batch (``acks=all``), else raises
:class:`~callvet.core.outbox.PublishError` and the relay retries the batch.

Kafka has no broker-side de-duplication by message id across producer sessions: the idempotent
producer (``enable.idempotence``) removes the duplicates its own retries would make within one session,
but a batch the relay re-publishes after a crash is stored twice. So the event id travels as the
``event_id`` header and consumers de-duplicate on it (docs/events.md). The message key is the
aggregate id (a decision, call, case or workflow instance), so one aggregate's events stay in one
partition, in order.

Not exercised against a broker here (none runs on this machine); it is constructed in the tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from callvet.core.outbox import Event, PublishError

__all__ = ["KafkaPublisher"]


class KafkaPublisher:
    def __init__(self, bootstrap_servers: str = "127.0.0.1:9092", *, topic: str = "callvet.events",
                 flush_timeout_s: float = 30.0, config: dict[str, Any] | None = None) -> None:
        self.topic = topic
        self.flush_timeout_s = flush_timeout_s
        self.config: dict[str, Any] = {
            "bootstrap.servers": bootstrap_servers, "enable.idempotence": True, "acks": "all",
            "linger.ms": 5, "compression.type": "lz4", **(config or {}),
        }
        self._producer: Any = None

    def __repr__(self) -> str:
        return f"KafkaPublisher({self.config['bootstrap.servers']!r}, topic={self.topic!r})"

    async def connect(self) -> None:
        if self._producer is None:
            from confluent_kafka import KafkaException, Producer

            try:
                self._producer = Producer(self.config)
            except KafkaException as exc:
                raise PublishError(f"Kafka producer could not be configured: {exc}") from None

    def _send(self, events: Sequence[Event]) -> list[str]:
        errors: list[str] = []

        def done(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(str(err))

        p = self._producer
        for e in events:
            p.produce(self.topic, value=e.body(), key=e.aggregate_id.encode(), on_delivery=done,
                      headers=[("event_id", e.event_id.encode()), ("subject", e.subject.encode())])
            p.poll(0)
        left = p.flush(self.flush_timeout_s)
        if left:
            errors.append(f"{left} messages not acknowledged within {self.flush_timeout_s:g} s")
        return errors

    async def publish(self, events: Sequence[Event]) -> None:
        await self.connect()
        try:
            errors = await asyncio.to_thread(self._send, events)
        except Exception as exc:
            raise PublishError(f"Kafka produce failed: {type(exc).__name__}: {exc}") from None
        if errors:
            raise PublishError(f"Kafka did not acknowledge the batch: {errors[0]}")

    async def close(self) -> None:
        p, self._producer = self._producer, None
        if p is not None:
            await asyncio.to_thread(p.flush, 5.0)
