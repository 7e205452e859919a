"""JSON log lines: one object per record, with whatever the caller passed in `extra`.

The pipeline, the sync and alert delivery pass `extra={"event_id": …, "workspace_id": …}` (and
outbox or delivery ids), so a log search for one workspace finds every line about it. Enabled by
LOG_FORMAT=json, the default unless DEBUG is on.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

#: Attributes every LogRecord has; anything else on a record came from `extra`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
#: Ids first, so a line is readable before it is parsed.
_ID_KEYS = ("event_id", "event_ids", "workspace_id", "outbox_id", "alert_id", "delivery_id")


def _jsonable(value: Any) -> Any:
    """Django passes the request object itself in `extra`: keep what identifies it, not its repr."""
    if hasattr(value, "method") and hasattr(value, "get_full_path"):
        return {"method": value.method, "path": value.path}
    return value


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        extras = {key: value for key, value in vars(record).items() if key not in _STANDARD and key[:1] != "_"}
        for key in _ID_KEYS:
            if key in extras:
                line[key] = extras.pop(key)
        line.update({key: _jsonable(value) for key, value in extras.items()})
        if record.exc_info:
            line["exc_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
            line["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)
