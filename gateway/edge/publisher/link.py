"""The publisher's side of the broker connection: what the transport's thread reports.

:class:`BrokerLink` is the publisher's TransportListener. Its callbacks run in the
transport's thread and only record what happened (acknowledgements, refusals, ingest
confirmations, ingest workers coming and going, a session the broker lost) under one lock,
then wake the publisher thread, which alone touches the spool (``take()``). The in-flight
window (``mqtt.max_inflight``) is counted here: paho's own queue is unbounded, so without
it a slow broker would grow memory without limit.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from gateway.wire.transport import Received, Refusal, Transport, TransportError

log = logging.getLogger("medgw.publisher")


@dataclass(frozen=True, slots=True)
class InFlight:
    """A spooled record handed to the transport and not yet answered."""

    key: str
    n: int
    record_id: int
    attempt: int


@dataclass(frozen=True, slots=True)
class Answer:
    """The broker's answer to one publish."""

    sent: InFlight
    refusal: Refusal | None


@dataclass
class Taken:
    """Everything the transport reported since the last ``take()``."""

    answers: list[Answer] = field(default_factory=list)
    commits: list[tuple[str, int]] = field(default_factory=list)
    session_lost: bool = False


class BrokerLink:
    """Connection state, in-flight window and inbound control messages, behind one lock."""

    def __init__(self, transport: Transport, *, max_inflight: int, commit_topic: str,
                 ingest_filter: str, status_topic: str, status: Callable[[str], bytes],
                 wake: Callable[[], None], on_malformed: Callable[[str], None],
                 count_error: Callable[[str], None]) -> None:
        self.transport = transport
        self.max_inflight = max_inflight
        self.commit_topic = commit_topic
        self.ingest_filter = ingest_filter
        self.status_topic = status_topic
        self._status = status
        self._wake = wake
        self._on_malformed = on_malformed
        self._count_error = count_error
        self.connected = threading.Event()
        self.ingest_seen = threading.Event()  # a worker announced itself since the last loss
        self.stopping = False
        self._lock = threading.Lock()
        self._inflight: dict[int, InFlight] = {}
        self._early: dict[int, Refusal | None] = {}  # answers that beat publish() returning
        self._status_mids: dict[int, threading.Event] = {}
        self._taken = Taken()
        self._workers: dict[str, str] = {}
        self._worker_seen = False
        self._connected_once = False
        self.broker_state_losses = 0
        self.callback_errors = 0
        self._error: str | None = None

    @property
    def last_error(self) -> str | None:
        """The latest connection or publish problem in words (None once connected again)."""
        with self._lock:
            return self._error

    def set_error(self, text: str | None) -> None:
        """Record (or clear) the latest problem."""
        with self._lock:
            self._error = text

    # -- TransportListener (the transport's thread) --------------------------------------
    def on_connected(self, session_present: bool) -> None:
        """Subscribe to the control topics, say we are online; note a lost session."""
        with self._lock:
            lost = self._connected_once and not session_present
            if lost:
                # The broker restarted without our session and may have lost messages it
                # acknowledged but had not delivered: resend once an ingest worker is back.
                self.broker_state_losses += 1
                self._taken.session_lost = True
                self.ingest_seen.clear()
            self._connected_once = True
            self._error = None
        if lost:
            log.warning("broker came back without our session: resending the spool once an "
                        "ingest worker is subscribed")
        try:
            self.transport.subscribe([(self.ingest_filter, 1), (self.commit_topic, 1)])
        except TransportError as err:  # publish anyway: PUBACKs alone end records then
            self.set_error(f"cannot subscribe to the control topics: {err}")
            log.error("cannot subscribe to the control topics: %s", err)
        self.publish_status("online")
        self.connected.set()
        self._wake()
        log.info("connected to the broker")

    def on_connect_failed(self, reason: str) -> None:
        """Remember why the broker refused us (shown by wait_connected and /health)."""
        self.set_error(f"broker refused the connection: {reason}")
        log.error("broker refused the connection: %s", reason)

    def on_disconnected(self, reason: str) -> None:
        """Stop publishing until the transport reconnects (the spool keeps filling)."""
        self.connected.clear()
        if not self.stopping:
            log.warning("disconnected from broker (%s); spooling, reconnecting", reason)

    def on_published(self, mid: int, refusal: Refusal | None) -> None:
        """Record the broker's answer to a publish; free its in-flight slot."""
        with self._lock:
            status = self._status_mids.pop(mid, None)
            if status is not None:
                status.set()
                return
            sent = self._inflight.pop(mid, None)
            if sent is None:  # the answer beat publish() returning the mid
                self._early[mid] = refusal
                return
            self._taken.answers.append(Answer(sent, refusal))
        self._wake()

    def on_subscribed(self, mid: int, refusal: Refusal | None) -> None:
        """A refused control subscription means no confirmations: say so."""
        if refusal is not None:
            self.set_error(f"subscription to the control topics refused: {refusal.reason}")
            log.error("subscription to the control topics refused: %s", refusal.reason)

    def on_message(self, message: Received) -> None:
        """An ingest worker's confirmation or presence message."""
        try:
            doc = orjson.loads(message.payload)
            if message.topic == self.commit_topic:
                commits = [(str(key), int(seq)) for key, seq in doc["c"]]
                with self._lock:
                    self._taken.commits.extend(commits)
                self._wake()
                return
            state = str(doc["state"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, OverflowError):
            log.warning("ignored a malformed message on %s", message.topic)
            self._on_malformed(message.topic)
            return
        with self._lock:
            self._workers[message.topic] = state
            if state == "online":
                self._worker_seen = True
                self.ingest_seen.set()
        self._wake()

    def on_callback_error(self, callback: str, err: Exception) -> None:
        """A bug in a callback above: counted and shown, the connection goes on."""
        with self._lock:
            self.callback_errors += 1
            self._error = f"MQTT callback {callback} failed: {type(err).__name__}: {err}"
        self._count_error(f"callback:{callback}")
        self._wake()

    # -- the publisher thread ------------------------------------------------------------
    def track(self, mid: int, sent: InFlight) -> None:
        """Count a publish in flight until its answer (which may have arrived already)."""
        with self._lock:
            if mid in self._early:
                self._taken.answers.append(Answer(sent, self._early.pop(mid)))
            else:
                self._inflight[mid] = sent

    def take(self) -> Taken:
        """Return and clear what the transport reported since the last call."""
        with self._lock:
            taken, self._taken = self._taken, Taken()
        return taken

    def free_slots(self) -> int:
        """Return how many more publishes the in-flight window allows now."""
        with self._lock:
            return self.max_inflight - len(self._inflight)

    def inflight(self) -> int:
        """Return the publishes not yet answered by the broker."""
        with self._lock:
            return len(self._inflight)

    def worker_seen(self) -> bool:
        """True once any ingest worker announced itself (confirmations can be expected)."""
        with self._lock:
            return self._worker_seen

    def worker_online(self) -> bool:
        """True while at least one ingest worker says it is online."""
        with self._lock:
            return any(state == "online" for state in self._workers.values())

    def workers(self) -> dict[str, str]:
        """Return the announced ingest workers' status topics and states."""
        with self._lock:
            return dict(self._workers)

    def publish_status(self, state: str) -> threading.Event:
        """Publish our retained status; the event is set when the broker acknowledged it."""
        done = threading.Event()
        try:
            mid = self.transport.publish(self.status_topic, self._status(state), 1, True)
        except TransportError as err:
            log.error("cannot publish the gateway status: %s", err)
            return done
        with self._lock:
            if mid in self._early:
                del self._early[mid]
                done.set()
            else:
                self._status_mids[mid] = done
        return done
