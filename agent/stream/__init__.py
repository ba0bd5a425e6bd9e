"""Subscriptions on servers: the store's change feed published to agents' views.

See ``publisher`` for the contract; ``endpoint`` serves ``SubscribeService``.
"""

from __future__ import annotations

from agent.stream.endpoint import SUBSCRIBE, SubscribeEndpoint, WanStreamForwarder
from agent.stream.payloads import TOPIC_NAMES, TopicKey, affected, read_value, topic_key
from agent.stream.publisher import HEARTBEAT, Publisher, PublisherStats

__all__ = [
    "HEARTBEAT",
    "SUBSCRIBE",
    "TOPIC_NAMES",
    "Publisher",
    "PublisherStats",
    "SubscribeEndpoint",
    "TopicKey",
    "WanStreamForwarder",
    "affected",
    "read_value",
    "topic_key",
]
