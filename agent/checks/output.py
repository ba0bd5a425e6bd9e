"""Check output, capped at 4 KiB as Consul caps it (``DefaultBufSize``)."""

from __future__ import annotations

from typing import Final

__all__ = ["OUTPUT_MAX_SIZE", "OutputBuffer", "cap_output"]

#: Most bytes of output kept for one check (UTF-8), Consul's ``DefaultBufSize``.
OUTPUT_MAX_SIZE: Final = 4 * 1024


def cap_output(text: str, limit: int = OUTPUT_MAX_SIZE) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, keeping its head.

    A cut text ends with `` ... (captured K of N bytes)`` (Consul's TTL wording)
    and the whole, marker included, still fits in ``limit`` bytes.
    """
    data = text.encode("utf-8", errors="replace")
    total = len(data)
    if total <= limit:
        return text
    # The marker's length depends on K; sizing it with K = limit is an upper bound.
    keep = max(0, limit - len(f" ... (captured {limit} of {total} bytes)".encode()))
    head = data[:keep].decode("utf-8", errors="ignore")
    return f"{head} ... (captured {keep} of {total} bytes)"


class OutputBuffer:
    """The last ``limit`` bytes written to it, like Consul's circular buffer.

    Script output is read through one: what a failing script printed last is
    the part worth keeping.
    """

    __slots__ = ("_data", "_limit", "total")

    def __init__(self, limit: int = OUTPUT_MAX_SIZE) -> None:
        self._limit = limit
        self._data = bytearray()
        self.total = 0

    def write(self, chunk: bytes) -> None:
        """Append ``chunk``, dropping the oldest bytes beyond the limit."""
        self.total += len(chunk)
        self._data += chunk
        if len(self._data) > self._limit:
            del self._data[: len(self._data) - self._limit]

    def text(self) -> str:
        """The kept bytes as text; ``Captured K of N bytes`` first when some were dropped.

        The result, header included, fits in the limit.
        """
        if self.total <= self._limit:
            return self._data.decode("utf-8", errors="replace")
        header_max = len(f"Captured {self._limit} of {self.total} bytes\n...\n".encode())
        tail = bytes(self._data[max(0, len(self._data) - (self._limit - header_max)):])
        body = tail.decode("utf-8", errors="ignore")
        # errors="replace" above could grow the text past the limit; "ignore" cannot.
        return f"Captured {len(tail)} of {self.total} bytes\n...\n{body}"
