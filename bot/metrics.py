"""Prometheus metrics of one server process, on a registry of its own (no module globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.messages_in = Counter(
            "btp_messages_in_total",
            "Messages handled, by channel",
            ["channel"],
            registry=self.registry,
        )
        self.messages_out = Counter(
            "btp_messages_out_total",
            "Replies produced, by channel",
            ["channel"],
            registry=self.registry,
        )
        self.labels = Counter(
            "btp_labels_total", "NLU labels of handled messages", ["label"], registry=self.registry
        )
        self.handoffs = Counter(
            "btp_handoffs_total", "Chats handed to a person", registry=self.registry
        )
        self.errors = Counter(
            "btp_errors_total", "Errors, by where they happened", ["where"], registry=self.registry
        )
        self.latency = Histogram(
            "btp_message_seconds",
            "Time to handle one message, by channel",
            ["channel"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.notifications = Counter(
            "btp_platform_events_total",
            "Platform events, by outcome",
            ["outcome"],
            registry=self.registry,
        )

        self.limits = Counter(
            "btp_limit_tripped_total",
            "Limits across chats reached (an attack, or many mistakes at once), by limit",
            ["limit"],
            registry=self.registry,
        )

    def handled(self, channel: str, label: str | None, replies: int, seconds: float) -> None:
        self.messages_in.labels(channel).inc()
        self.messages_out.labels(channel).inc(replies)
        self.latency.labels(channel).observe(seconds)
        if label is not None:
            self.labels.labels(label).inc()
            if label == "handoff.human":
                self.handoffs.inc()

    def tripped(self, limit: str) -> None:
        self.limits.labels(limit).inc()

    def error(self, where: str) -> None:
        self.errors.labels(where).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
