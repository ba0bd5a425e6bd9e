"""The state layer runs on both stores: reuse the store suite's fixtures."""

from tests.store.conftest import etcd_server, store

__all__ = ["etcd_server", "store"]
