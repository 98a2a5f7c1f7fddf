"""Webhook deliveries: each event a webhook wants is POSTed to it as JSON, signed, at least once,
in id order, by the one runner that holds the webhook's lease.

A delivery that fails (no 2xx answer in time, a redirect, an address outside
FACEREC_WEBHOOK_NETWORKS) is tried again after 1, 2, 4, ... seconds, at most 10 minutes apart,
for as long as the event is kept (FACEREC_EVENT_RETENTION); later events wait behind it, so a
receiver that comes back gets every event, once each, in order. The store keeps each webhook's
cursor (every event up to it has been delivered or filtered out), so another runner carries
on where a dead one stopped. Redirects are never followed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import threading
import time

import requests

from .. import fetch
from ..config import Settings
from ..store import Store
from ..store.streams import EventRow
from ..store.webhooks import WebhookRow
from .records import Event

log = logging.getLogger(__name__)

BATCH = 50  # events read from the store at once
MAX_BACKOFF = 600.0  # seconds between attempts, at most
TIMEOUT = (3.0, 10.0)  # seconds to connect, and to wait for each part of the answer


def signature(secret: str, body: bytes) -> str:
    """The X-Facerec-Signature of a body: ``sha256=`` and the hex HMAC-SHA256 of its bytes."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def wanted(webhook: WebhookRow, event: EventRow) -> bool:
    """Whether a webhook asked for an event: its kind, and its person (or unknown faces)."""
    if event.kind not in webhook.events:
        return False
    if event.name is None:
        return webhook.unknown
    return webhook.people is None or event.name in webhook.people


def backoff(attempts: int) -> float:
    """Seconds before the next attempt after this many failures in a row, with jitter."""
    return min(MAX_BACKOFF, 2.0 ** (attempts - 1)) * random.uniform(0.9, 1.1)


class Delivery:
    """One webhook's deliveries, in a thread of their own: a slow receiver delays only its own
    events."""

    def __init__(self, store: Store, settings: Settings, runner: str, row: WebhookRow) -> None:
        self.store, self.settings, self.runner, self.row = store, settings, runner, row
        self.wake, self.stop = threading.Event(), threading.Event()
        self.session = fetch.session(settings.webhook_networks)
        self.thread = threading.Thread(target=self._run, name=f"webhook-{row.id}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        row = self.row
        cursor, attempts, next_attempt = row.cursor, row.attempts, row.next_attempt
        while not self.stop.is_set():
            if time.time() < next_attempt:
                self.stop.wait(min(1.0, next_attempt - time.time()))
                continue
            try:
                events = self.store.events(cursor, limit=BATCH)
            except Exception:  # the store is away: try again shortly
                log.warning("webhook %d: cannot read events", row.id)
                self.stop.wait(2.0)
                continue
            if not events:
                self.wake.wait(1.0)
                self.wake.clear()
                continue
            delivered, error = 0, None
            for event in events:
                if wanted(row, event):
                    error = self._post(event)
                    if error is not None:
                        attempts += 1
                        next_attempt = time.time() + backoff(attempts)
                        break
                    delivered, attempts = delivered + 1, 0
                cursor = event.id
            if not self._progress(cursor, delivered, attempts, next_attempt, error):
                return

    def _progress(self, cursor: int, delivered: int, attempts: int, next_attempt: float,
                  error: str | None) -> bool:
        """Record the cursor; False when the runner no longer holds the webhook."""
        try:
            return self.store.webhook_progress(self.row.id, self.runner, cursor, delivered,
                                               attempts, next_attempt if attempts else 0.0,
                                               error)
        except Exception:
            log.warning("webhook %d: cannot record its deliveries", self.row.id)
            return True

    def _post(self, event: EventRow) -> str | None:
        """POST one event; None when the receiver took it, else why not (no URL in it)."""
        body = json.dumps(Event.of(event).__native_types__(), separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "facerec/1",
                   "X-Facerec-Event-Id": str(event.id), "X-Facerec-Event": event.kind,
                   "X-Facerec-Signature": signature(self.row.secret, body)}
        try:
            response = self.session.post(self.row.url, data=body, headers=headers,
                                         timeout=TIMEOUT, allow_redirects=False)
            response.close()
        except fetch._BlockedAddress:
            return "the URL no longer resolves to an address FACEREC_WEBHOOK_NETWORKS allows"
        except requests.Timeout:
            return "timed out"
        except (requests.RequestException, OSError) as problem:
            return f"cannot connect ({type(problem).__name__})"
        if response.is_redirect:
            return f"answered {response.status_code}: redirects are not followed"
        if not 200 <= response.status_code < 300:
            return f"answered {response.status_code}"
        return None

    def close(self) -> None:
        """Stop after the delivery under way, if any."""
        self.stop.set()
        self.wake.set()
        self.session.close()


class Deliveries:
    """The webhooks a runner delivers: one Delivery each, kept in step with its leases."""

    def __init__(self, store: Store, settings: Settings, runner: str) -> None:
        self.store, self.settings, self.runner = store, settings, runner
        self.running: dict[int, Delivery] = {}

    def sync(self, held: list[WebhookRow]) -> None:
        """Start deliveries for webhooks newly held, stop those no longer held (deleted, or
        taken by another runner)."""
        ids = {row.id for row in held}
        for webhook_id in set(self.running) - ids:
            self.running.pop(webhook_id).close()
        for row in held:
            if row.id not in self.running or not self.running[row.id].thread.is_alive():
                self.running[row.id] = Delivery(self.store, self.settings, self.runner, row)

    def notify(self) -> None:
        """New events were stored: look now instead of at the next poll."""
        for delivery in self.running.values():
            delivery.wake.set()

    def close(self) -> None:
        for delivery in self.running.values():
            delivery.close()
        for delivery in self.running.values():
            delivery.thread.join(timeout=TIMEOUT[0] + TIMEOUT[1])
        self.running.clear()
