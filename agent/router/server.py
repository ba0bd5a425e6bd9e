"""Server: what the router knows about one server agent."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Server"]


@dataclass(frozen=True, slots=True)
class Server:
    """A server agent: its node name (its identity), RPC address and datacenter."""

    name: str
    address: str
    datacenter: str

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("server name must not be empty")
        host, sep, port = self.address.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"server address must be host:port, got {self.address!r}")
        if not self.datacenter:
            raise ValueError("server datacenter must not be empty")

    def __str__(self) -> str:
        return f"{self.name} ({self.address}, {self.datacenter})"
