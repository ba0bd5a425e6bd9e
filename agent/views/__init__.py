"""Materialized views: how an agent answers discovery reads (DESIGN.md section 7).

``View`` (one subscription, one value), ``ViewStore`` (shared, LRU, idle
expiry), ``ViewInvoker`` (the agent's invoker, answering covered reads from
views), ``READS`` (which reads, and how each is built from a view's value).
"""

from __future__ import annotations

from agent.views.introspect import view_rows, views_stats
from agent.views.invoker import Rendered, ViewInvoker
from agent.views.reads import READS, Read
from agent.views.sources import SUBSCRIBE, StreamClient, client_source
from agent.views.store import IDLE_TIMEOUT, MAX_VIEWS, ViewStore, ViewStoreStats
from agent.views.view import Answer, Source, View, ViewKey, ViewStats

__all__ = [
    "IDLE_TIMEOUT",
    "MAX_VIEWS",
    "READS",
    "SUBSCRIBE",
    "Answer",
    "Read",
    "Rendered",
    "Source",
    "StreamClient",
    "View",
    "ViewInvoker",
    "ViewKey",
    "ViewStats",
    "ViewStore",
    "ViewStoreStats",
    "client_source",
    "view_rows",
    "views_stats",
]
