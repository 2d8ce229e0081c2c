"""The multilang protocol loop: amazon-kclpy's ``KCLProcess``, made strict.

``KCLProcess`` prints a processor's exception and still reports the message done, so the daemon
would go on and a later checkpoint would pass the records that failed. Here an exception ends the
loop (the command exits non-zero, and the daemon, seeing its child gone, stops: a restart resumes
from the last checkpoint). It also understands the KCL 1.x ``shutdown`` message (``reason``
TERMINATE: the shard ended; ZOMBIE: the lease was lost), which kclpy ≥ 2 cannot decode, and
refuses a line that is no protocol message with an error naming it instead of a traceback.
"""

from __future__ import annotations

import json
from typing import Any

from amazon_kclpy import dispatch, kcl

from consumer.errors import ConsumerError

_KCL1_SHUTDOWN = {"TERMINATE": "shardEnded", "ZOMBIE": "leaseLost"}


class ProtocolError(ConsumerError):
    """A line from the daemon that is no multilang message."""


class StrictKCLProcess(kcl.KCLProcess):
    """Runs a v3 record processor over the daemon's stdin / stdout; processor errors propagate."""

    def _perform_action(self, action: Any) -> None:
        action.dispatch(self.checkpointer, self.processor)

    def _handle_a_line(self, line: str) -> None:
        if not line.strip():
            return  # a blank line carries no message
        message = decode_message(line)
        if message.action == "shutdown":  # KCL 1.x
            self._perform_action(message.translated)
            self._report_done("shutdown")
            return
        self._perform_action(message)
        self._report_done(message.action)


class _Kcl1Shutdown:
    action = "shutdown"

    def __init__(self, translated: Any) -> None:
        self.translated = translated


def decode_message(line: str) -> Any:
    """The message on one protocol line (amazon-kclpy's message classes).

    Raises:
        ProtocolError: naming what is wrong with the line.
    """
    try:
        raw = json.loads(line)
    except ValueError as exc:
        raise ProtocolError(f"the daemon sent a line that is not JSON ({exc}): {line[:200]!r}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("action"), str):
        raise ProtocolError(f"the daemon sent a line that is not a multilang message: {line[:200]!r}")
    if raw["action"] == "shutdown":
        reason = raw.get("reason")
        if reason not in _KCL1_SHUTDOWN:
            raise ProtocolError(f"KCL 1.x shutdown with reason {reason!r}, expected TERMINATE or ZOMBIE")
        return _Kcl1Shutdown(dispatch.message_decode({"action": _KCL1_SHUTDOWN[reason]}))
    try:
        return json.loads(line, object_hook=dispatch.message_decode)
    except (KeyError, ValueError, TypeError, dispatch.MalformedAction) as exc:
        raise ProtocolError(f"the daemon sent a malformed {raw['action']!r} message ({exc}): {line[:200]!r}") from exc
