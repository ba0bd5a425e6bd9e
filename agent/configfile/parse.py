"""Reading one config file, JSON or HCL, into plain Python values, and finding lines in it.

HCL is read with python-hcl2 (strings unquoted, no comments). It gives every
block as a list of objects marked ``__is_block__``, as HCL allows a block to
repeat; Consul (which decodes HCL, then patches lists of objects into single
objects except where a list is meant) does the same, so :func:`plain` folds a
one-element block list back into an object and :mod:`agent.configfile.load`
decides where several are allowed (``service``, ``check``).

Errors are :class:`ConfigError`, an ``InvalidArgument`` whose message starts
with ``file:line:`` so an operator can go straight to the line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hcl2
from lark.exceptions import LarkError, UnexpectedInput

from agent.errors import InvalidArgument

__all__ = ["FORMATS", "ConfigError", "Source", "plain", "read_source"]

#: The extensions a config directory's files must have (others are skipped, as Consul does).
FORMATS = {".json": "json", ".hcl": "hcl"}

_HCL_OPTIONS = hcl2.SerializationOptions(
    with_comments=False,
    with_meta=False,
    explicit_blocks=True,
    strip_string_quotes=True,
    preserve_heredocs=False,
)
BLOCK_MARK = "__is_block__"


class ConfigError(InvalidArgument):
    """A configuration file is wrong; the message names the file and the line."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path = path
        self.line = line
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True, slots=True)
class Source:
    """One file's text and its decoded top-level object."""

    path: str
    text: str
    data: dict[str, Any]

    def line_of(self, path: tuple[str | int, ...]) -> int | None:
        """The line where the key at ``path`` (keys and list indexes) is written.

        A text search, key after key, from where the previous one was found: a
        list index ``n`` after a key means that key's ``n``-th appearance (a
        repeated HCL block, or the ``n``-th object of a JSON list).
        """
        pos = 0
        last_key = ""
        found = False
        for part in path:
            if isinstance(part, int):
                if not last_key:
                    continue
                for _ in range(part):
                    m = _key_pattern(last_key).search(self.text, pos + 1)
                    if m is None:
                        break
                    pos = m.start()
                continue
            m = _key_pattern(part).search(self.text, pos)
            if m is None:
                break
            pos, last_key, found = m.start(), part, True
        if not found:
            return None
        return self.text.count("\n", 0, pos) + 1


def _key_pattern(key: str) -> re.Pattern[str]:
    # `key =`, `key {`, `"key":` (JSON), `"key" = ` (quoted HCL), case-insensitively.
    return re.compile(rf'(?<![\w.-])"?{re.escape(key)}"?\s*[={{:]', re.IGNORECASE)


def plain(value: Any) -> Any:
    """HCL's decoded value without block markers; a one-element block list is an object."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if k != BLOCK_MARK}
    if isinstance(value, list):
        items = [plain(v) for v in value]
        if len(value) == 1 and isinstance(value[0], dict) and value[0].get(BLOCK_MARK):
            return items[0]
        return items
    return value


def is_block_list(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(v, dict) and v.get(BLOCK_MARK) for v in value)
    )


def read_source(path: str, fmt: str | None = None) -> Source:
    """Read and decode ``path`` (JSON or HCL, by extension unless ``fmt`` says)."""
    p = Path(path)
    fmt = fmt or FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise ConfigError(path, None, "config file must end in .json or .hcl")
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ConfigError(path, None, "no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, None, f"cannot read: {exc}") from None
    if fmt == "json":
        try:
            data = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as exc:
            raise ConfigError(path, exc.lineno, f"invalid JSON: {exc.msg}") from None
    else:
        try:
            data = hcl2.loads(text, serialization_options=_HCL_OPTIONS) if text.strip() else {}
        except UnexpectedInput as exc:
            line = getattr(exc, "line", None)
            raise ConfigError(
                path, line if isinstance(line, int) and line > 0 else None, "invalid HCL"
            ) from None
        except (LarkError, ValueError, TypeError) as exc:
            raise ConfigError(path, None, f"invalid HCL: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(path, 1, "the file must hold an object of configuration keys")
    return Source(path, text, data)
