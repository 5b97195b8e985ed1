"""Newest-wins hand-off between threads: the one-slot mailbox that keeps latency bounded."""

from __future__ import annotations

import threading
from typing import Any


class OneSlot:
    """A one-element mailbox: ``put`` overwrites, ``take`` waits for and removes the newest item."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self._full = False

    def put(self, item: Any) -> bool:
        """Store ``item``; True when an unread item was overwritten (a dropped frame)."""
        with self._cond:
            dropped = self._full
            self._item, self._full = item, True
            self._cond.notify()
            return dropped

    def take(self, timeout: float) -> Any:
        """The newest item, or None after ``timeout`` seconds without one."""
        with self._cond:
            if not self._full:
                self._cond.wait(timeout)
            if not self._full:
                return None
            item, self._item, self._full = self._item, None, False
            return item

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()
