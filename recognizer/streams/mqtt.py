"""MQTT, the Home Assistant and Frigate way: with FACEREC_MQTT_URL set, each runner publishes
what its streams see to the broker (paho-mqtt, reconnecting by itself):

- ``<topic>/events``: each event, as the API shows it (QoS 1);
- ``<topic>/people/<name>``, retained: ``{"present", "stream", "since", "confidence",
  "last_seen"}`` whenever a person comes into view or leaves; emptied when the person is
  deleted;
- ``<topic>/streams/<name>/status``, retained: the stream's status, when it changes and every
  10 s.

``<topic>`` is FACEREC_MQTT_TOPIC (``facerec``). A name's ``/``, ``+`` and ``#`` (which MQTT
gives a meaning) are written %2F, %2B and %23, and ``%`` itself %25.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt

log = logging.getLogger(__name__)

STATUS_EVERY = 10.0  # seconds between a stream's unchanged status messages


def topic_level(name: str) -> str:
    """A name as one topic level."""
    return (name.replace("%", "%25").replace("/", "%2F").replace("+", "%2B")
            .replace("#", "%23"))


class Publisher:
    """One connection to the broker, for one runner."""

    def __init__(self, url: str, topic: str, client_id: str) -> None:
        parts = urlsplit(url)
        self.topic = topic
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        if parts.username is not None:
            self.client.username_pw_set(unquote(parts.username),
                                        unquote(parts.password or "") or None)
        if parts.scheme == "mqtts":
            self.client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        self.client.reconnect_delay_set(1, 30)
        self.client.on_connect = self._connected
        self.connected = threading.Event()
        self.client.connect_async(parts.hostname, parts.port or (8883 if parts.scheme == "mqtts"
                                                                 else 1883), keepalive=30)
        self.client.loop_start()

    def _connected(self, client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            log.warning("MQTT broker refused the connection: %s", reason)
            return
        log.info("connected to the MQTT broker")
        self.connected.set()

    def event(self, event: dict) -> None:
        """Publish one event."""
        self.client.publish(f"{self.topic}/events", json.dumps(event), qos=1)

    def person(self, name: str, state: dict | None) -> None:
        """Publish a person's presence (retained); None empties their topic."""
        self.client.publish(f"{self.topic}/people/{topic_level(name)}",
                            b"" if state is None else json.dumps(state), qos=1, retain=True)

    def stream_status(self, name: str, status: dict) -> None:
        """Publish a stream's status (retained)."""
        self.client.publish(f"{self.topic}/streams/{topic_level(name)}/status",
                            json.dumps(status), qos=1, retain=True)

    def close(self) -> None:
        """Send what is queued, then disconnect."""
        self.client.disconnect()
        self.client.loop_stop()
