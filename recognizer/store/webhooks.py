"""What the store keeps of webhooks: where events go, which of them, and how far each
webhook's deliveries have come (its cursor), with the lease that gives each webhook to one
runner at a time (timed by the database's clock, ``_CLOCK``, as streams' leases are)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Sequence

from ..errors import UnknownWebhook
from .core import StoreCore


@dataclass(frozen=True)
class WebhookRow:
    """A webhook, and how far its deliveries have come: every event up to ``cursor`` has been
    delivered or filtered out."""

    id: int
    url: str
    events: tuple[str, ...]
    people: tuple[str, ...] | None
    unknown: bool
    secret: str
    created_at: str
    cursor: int
    delivered: int
    attempts: int
    next_attempt: float
    last_error: str | None


_WEBHOOK_COLUMNS = ("id, url, events, people, unknown, secret, created_at, cursor, delivered,"
                    " attempts, next_attempt, last_error")


class WebhookTables(StoreCore):
    """Webhooks, their leases and delivery cursors."""

    def _webhook_rows(self, where: str, parameters: Sequence) -> list[WebhookRow]:
        rows = self._execute(f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks{where} ORDER BY id",
                             parameters).fetchall()
        return [WebhookRow(int(r[0]), r[1], tuple(json.loads(r[2])),
                           None if r[3] is None else tuple(json.loads(r[3])), bool(r[4]), r[5],
                           r[6], int(r[7]), int(r[8]), int(r[9]), float(r[10]), r[11])
                for r in rows]

    def add_webhook(self, url: str, events: Sequence[str], people: Sequence[str] | None,
                    unknown: bool, secret: str, created_at: str) -> WebhookRow:
        """Add a webhook; it is sent the events recorded from now on."""
        with self._write():
            (webhook_id,) = self._one(
                "INSERT INTO webhooks (url, events, people, unknown, secret, created_at, cursor)"
                " VALUES (?, ?, ?, ?, ?, ?, (SELECT COALESCE(MAX(id), 0) FROM events))"
                " RETURNING id",
                (url, json.dumps(list(events)), None if people is None else json.dumps(
                    list(people)), int(unknown), secret, created_at))
            return self._webhook_rows(" WHERE id = ?", (webhook_id,))[0]

    def webhooks(self) -> list[WebhookRow]:
        """Every webhook, by id."""
        with self._lock:
            return self._webhook_rows("", ())

    def webhook(self, webhook_id: int) -> WebhookRow:
        """One webhook.

        :raises UnknownWebhook: no webhook has that id
        """
        with self._lock:
            found = self._webhook_rows(" WHERE id = ?", (webhook_id,))
        if not found:
            raise UnknownWebhook()
        return found[0]

    def delete_webhook(self, webhook_id: int) -> None:
        """Delete a webhook; nothing more is sent to it.

        :raises UnknownWebhook: no webhook has that id
        """
        with self._write():
            if not self._one("SELECT 1 FROM webhooks WHERE id = ?", (webhook_id,)):
                raise UnknownWebhook()
            self._execute("DELETE FROM webhooks WHERE id = ?", (webhook_id,))

    def lease_webhooks(self, runner: str, seconds: float) -> list[WebhookRow]:
        """Renew this runner's webhook leases and claim those nobody delivers: each webhook is
        delivered by one runner at a time, in order.

        :return: the webhooks this runner delivers now
        """
        clock = self._CLOCK
        with self._write():
            self._execute(f"UPDATE webhooks SET runner = ?, lease_until = {clock} + ? WHERE"
                          f" runner = ? OR runner IS NULL OR lease_until < {clock}",
                          (runner, seconds, runner))
            return self._webhook_rows(" WHERE runner = ?", (runner,))

    def release_webhooks(self, runner: str) -> None:
        """A runner stops: another may deliver its webhooks at once."""
        with self._write():
            self._execute("UPDATE webhooks SET runner = NULL, lease_until = NULL"
                          " WHERE runner = ?", (runner,))

    def webhook_progress(self, webhook_id: int, runner: str, cursor: int, delivered: int,
                         attempts: int = 0, next_attempt: float = 0.0,
                         error: str | None = None) -> bool:
        """Record how far a webhook's deliveries have come, if this runner still delivers it.

        :param delivered: events delivered since the last call
        :return: whether the runner still holds the webhook
        """
        with self._write():
            updated = self._execute(
                "UPDATE webhooks SET cursor = ?, delivered = delivered + ?, attempts = ?,"
                " next_attempt = ?, last_error = ? WHERE id = ? AND runner = ? AND cursor <= ?",
                (cursor, delivered, attempts, next_attempt, error, webhook_id, runner, cursor))
            return updated.rowcount > 0
