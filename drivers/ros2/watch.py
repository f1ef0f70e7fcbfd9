"""Nothing silent on a ROS 2 device: unmatched publications, middleware loss, silent topics.

Every ``STATUS_INTERVAL_S`` the watch asks the transport for each reader's status and
reports, each once per occurrence, with a log line, a metric and the device's error text
(which /health and the status page show as degraded):

- a publication on a wanted topic that no reader matched within ``unmatched_after_s``
  (``medgw_unmatched_publications{device,topic}``), with its type, vendor, participant
  and the likely reason (QoS or type);
- samples the middleware lost or rejected (``medgw_middleware_samples_lost``, kinds
  lost / rejected / reader_history_full; seq_gap: holes in the writers' sequence numbers,
  exact, where the transport has them (rclpy), and then neither ``lost`` nor stamp_gap
  is added; else stamp_gap: missing between the header stamps of a periodic topic,
  estimated), also an event on the device's ``topic-health`` stream (label LOST) and,
  as time, in ``medgw_device_gap_seconds``;
- an explicitly configured topic that delivered nothing (``medgw_topic_never_delivered``);
- a publisher that matched again after an earlier one: the silence is reported as a gap.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from drivers.ros2.mapping import type_mapping
from drivers.ros2.options import QosOptions, Ros2Options
from drivers.ros2.pipeline import HealthStream
from drivers.ros2.rmf_pipeline import RmfPipeline
from drivers.ros2.transport import Publication, ReaderStatus, Ros2Transport
from gateway.driver import DriverContext

if TYPE_CHECKING:
    from drivers.ros2.router import TopicRouter

STATUS_INTERVAL_S = 0.5
_UNSET = "\0unset"  # no error text has been set this session
NS = 1_000_000_000


@dataclass
class _Seen:
    """A publication on a wanted topic and what we know of it."""

    pub: Publication
    first_ns: int  # monotonic, when discovery first showed it
    not_read: str | None = None  # why no reader exists for it (unmapped, type conflict)
    degrade: bool = False  # a not-read reason that makes the device degraded
    reported: bool = False  # the unmatched warning was logged


@dataclass
class _Baseline:
    """A reader's cumulative counters at the last status look."""

    lost: int = 0
    rejected: int = 0
    history_full: int = 0
    matched_total: int = 0
    seq_lost: int = 0


def likely_reason(pub: Publication, status: ReaderStatus | None, qos: QosOptions | None) -> str:
    """Return the likely reason a publication did not match our reader."""
    if status is not None and status.incompatible_qos:
        return (f"QoS: {status.incompatible_policy or 'a policy'} incompatible (offered "
                f"{pub.reliability or '?'}/{pub.durability or '?'}, requested "
                f"{qos.reliability if qos else '?'}/{qos.durability if qos else '?'})")
    if qos is not None and pub.reliability == "best_effort" and qos.reliability == "reliable":
        return "QoS: offered best_effort, reader requests reliable"
    if qos is not None and pub.durability == "volatile" and qos.durability == "transient_local":
        return "QoS: offered volatile, reader requests transient_local"
    return ("type: the publisher's type (name or XTypes type information) differs from ours;"
            " for a DDS vendor whose type objects Cyclone rejects add its vendor id to "
            "network.ignore_type_information")


class TopicWatch:
    """Per-session bookkeeping of publications and reader status; see the module doc."""

    def __init__(self, ctx: DriverContext, options: Ros2Options, transport: Ros2Transport,
                 health: HealthStream, router: TopicRouter) -> None:
        self.ctx = ctx
        self.options = options
        self.transport = transport
        self.health = health
        self.router = router
        self.after_ns = int(options.unmatched_after_s * NS)
        self.seen: dict[str, _Seen] = {}  # publication key -> what we know
        self.unmatched: dict[str, list[Publication]] = {}  # topic -> unmatched publications
        self.silent: dict[str, bool] = {}  # explicit topics with no sample yet -> degrading
        self._baselines: dict[str, _Baseline] = {}
        self._gaps_seen: dict[str, int] = {}  # topic -> stamp-gap samples reported (all sessions)
        self._exact: set[str] = set()  # topics whose reader counted seq_gap exactly
        self._session_ns = 0
        self._next_ns = 0
        self._error: str | None = None

    def begin_session(self, now_ns: int) -> None:
        """Forget the previous session's publications and reader counters."""
        self.seen.clear()
        self._baselines.clear()
        self._session_ns = now_ns
        self._next_ns = now_ns
        self._error = _UNSET  # the first look replaces whatever the last session left

    def publication(self, pub: Publication, now_ns: int) -> None:
        """Record a publication on a wanted topic (or forget it when it went away)."""
        if not pub.alive:
            self.seen.pop(pub.key, None)
            return
        old = self.seen.get(pub.key)
        self.seen[pub.key] = _Seen(pub, now_ns if old is None else old.first_ns)

    def not_read(self, pub: Publication, why: str, degrade: bool = False) -> None:
        """Note why a publication gets no reader (shown by check; ``degrade``: reported)."""
        seen = self.seen.get(pub.key)
        if seen is not None:
            seen.not_read, seen.degrade = why, degrade

    def tick(self, now_ns: int) -> None:
        """At the status interval: connection, loss, rematch gaps, unmatched, silence."""
        if now_ns < self._next_ns:
            return
        self._next_ns = now_ns + int(STATUS_INTERVAL_S * NS)
        statuses = {t: self.transport.reader_status(t) for t in self.router.reading}
        any_matched = False
        for topic, status in statuses.items():
            if status is None:
                continue
            any_matched = any_matched or status.matched > 0
            self._counters(topic, status, now_ns)
        self.ctx.set_connected(any_matched)
        self._stamp_gaps(statuses)
        self._unmatched(statuses, now_ns)
        self._silence(now_ns)
        self.refresh_error()

    def _counters(self, topic: str, status: ReaderStatus, now_ns: int) -> None:
        base = self._baselines.setdefault(topic, _Baseline())
        pipeline = self.router.pipelines.get(topic)
        if status.matched_total > base.matched_total > 0 and pipeline is not None:
            # a publisher appeared after an earlier one: a restart or a new node
            self.ctx.report_gap(pipeline.silent_s(now_ns))
        rate = pipeline.settings.rate_hz if pipeline is not None else 0.0
        for kind, now_total, before in (("lost", status.lost, base.lost),
                                        ("rejected", status.rejected, base.rejected),
                                        ("seq_gap", status.seq_lost, base.seq_lost)):
            if now_total > before:
                n = now_total - before
                self._lost(topic, kind, n, n / rate if rate > 0 else None, None if
                           kind != "seq_gap" else f"{topic}: {n} samples missing in the "
                           "writers' sequence numbers: lost before the driver")
        if status.history_full > base.history_full:
            self._history_full(topic, status.history_full - base.history_full)
        base.lost, base.rejected, base.seq_lost = status.lost, status.rejected, status.seq_lost
        base.history_full = status.history_full
        base.matched_total = status.matched_total

    def _stamp_gaps(self, statuses: dict[str, ReaderStatus | None]) -> None:
        """Samples missing between header stamps (estimated, see drivers.ros2.gaps)."""
        for topic, pipeline in self.router.pipelines.items():
            gaps = pipeline.gaps
            if gaps is None or gaps.missing <= self._gaps_seen.get(topic, 0):
                continue
            status = statuses.get(topic)
            exact = status.exact if status is not None else topic in self._exact
            if exact:  # seq_gap counts these samples (and a closed reader's last ones)
                self._exact.add(topic)
                self._gaps_seen[topic] = gaps.missing
                continue
            n = gaps.missing - self._gaps_seen.get(topic, 0)
            self._gaps_seen[topic] = gaps.missing
            self._lost(topic, "stamp_gap", n, n * gaps.period_ns / NS,
                       f"{topic}: {n} samples missing between header stamps (estimated from "
                       f"the {gaps.period_ns / 1e6:g} ms period): lost before the driver")

    def _lost(self, topic: str, kind: str, n: int, seconds: float | None,
              text: str | None = None) -> None:
        m, device = self.ctx.metrics, self.ctx.device
        m.child(m.middleware_lost, device, topic, kind).inc(n)
        if seconds:
            m.gap_seconds.labels(device).inc(seconds)
        text = text or f"{topic}: the middleware {kind} {n} samples before the driver saw them"
        self.ctx.log.warning("ros2 %s: %s", device, text)
        self.health.emit(time.time_ns(), "LOST", text)

    def _history_full(self, topic: str, takes: int) -> None:
        m, device = self.ctx.metrics, self.ctx.device
        m.child(m.middleware_lost, device, topic, "reader_history_full").inc(takes)
        text = (f"{topic}: {takes} take(s) found the reader history full; samples may have "
                "been overwritten before the driver took them (raise qos.depth)")
        self.ctx.log.warning("ros2 %s: %s", device, text)
        self.health.emit(time.time_ns(), "LOST", text)

    def _unmatched(self, statuses: dict[str, ReaderStatus | None], now_ns: int) -> None:
        found: dict[str, list[Publication]] = {}
        for seen in self.seen.values():
            pub = seen.pub
            if now_ns - seen.first_ns < self.after_ns or pub.topic in self.router.quarantined:
                continue
            if seen.not_read is not None:
                if seen.degrade:
                    found.setdefault(pub.topic, []).append(pub)
                    self._report(seen, seen.not_read)
                continue
            status = statuses.get(pub.topic)
            if status is None and pub.topic not in self.router.reading:
                continue
            if status is not None and _matched(pub, status, self.seen.values()):
                if seen.reported:
                    seen.reported = False
                    self.ctx.log.info("ros2 %s: %s now matched (%s)", self.ctx.device,
                                      pub.topic, pub.describe())
                continue
            found.setdefault(pub.topic, []).append(pub)
            self._report(seen, likely_reason(pub, status, self.router.reading.get(pub.topic)))
        m = self.ctx.metrics
        for topic in set(self.unmatched) | set(found):
            m.child(m.unmatched_publications, self.ctx.device, topic).set(
                len(found.get(topic, ())))
        self.unmatched = found

    def _report(self, seen: _Seen, reason: str) -> None:
        if seen.reported:
            return
        seen.reported = True
        pub = seen.pub
        self.ctx.log.warning(
            "ros2 %s: publication on %s [%s] from %s participant %s did not match a reader "
            "within %.1f s; likely reason: %s", self.ctx.device, pub.topic,
            pub.ros_type or pub.type_name, pub.vendor or "unknown vendor",
            pub.node or pub.participant, self.after_ns / NS, reason)
        self.health.emit(time.time_ns(), "UNMATCHED", f"{pub.topic} unmatched: {reason}")

    def _silence(self, now_ns: int) -> None:
        m = self.ctx.metrics
        for topic, explicit in self.router.explicit.items():
            pipeline = self.router.pipelines.get(topic)
            delivered = pipeline is not None and pipeline.received > 0
            rate = explicit.rate_hz or self.options.default_rate_hz
            wait_ns = max(self.after_ns, int(5 * NS / rate))
            silent = not delivered and now_ns - self._session_ns >= wait_ns
            if silent and topic not in self.silent and topic not in self.router.quarantined:
                mapping = type_mapping(explicit.type) if explicit.type else None
                degrade = mapping is None or not mapping.is_event  # events may be rare
                self.silent[topic] = degrade
                m.child(m.topic_silent, self.ctx.device, topic).set(1)
                self.ctx.log.log(logging.WARNING if degrade else logging.INFO,
                                 "ros2 %s: configured topic %s delivered no sample in %.1f s "
                                 "(published? right type and QoS?)", self.ctx.device, topic,
                                 (now_ns - self._session_ns) / NS)
            elif delivered and topic in self.silent:
                del self.silent[topic]
                m.child(m.topic_silent, self.ctx.device, topic).set(0)

    def problems(self) -> list[str]:
        """Return the device's current problems, one short text each."""
        out = [f"{topic} quarantined ({why[:320]})"  # long enough to name the fix
               for topic, why in sorted(self.router.quarantined.items())]
        for topic, pubs in sorted(self.unmatched.items()):
            out.append(f"{topic}: {len(pubs)} publication(s) unmatched ({pubs[0].describe()})")
        out += [f"{topic}: no sample yet" for topic, bad in sorted(self.silent.items()) if bad]
        for topic, pipeline in sorted(self.router.pipelines.items()):
            refused = pipeline.refusals() if isinstance(pipeline, RmfPipeline) else []
            if refused:  # Open-RMF: robots, doors or lifts refused alone
                more = f" (+{len(refused) - 1} more refused)" if len(refused) > 1 else ""
                out.append(f"{topic}: {refused[0][:160]}{more}")
        return out

    def refresh_error(self) -> None:
        """Set the device error text from :meth:`problems` (None when there are none)."""
        problems = self.problems()
        error = "; ".join(problems) if problems else None
        if error != self._error:
            self._error = error
            self.ctx.set_error(error)


def _matched(pub: Publication, status: ReaderStatus, seen: Iterable[_Seen]) -> bool:
    if status.matched_keys is not None:
        return pub.key in status.matched_keys
    # count only: unmatched when fewer are matched than are alive on the topic
    return status.matched >= sum(1 for s in seen if s.pub.topic == pub.topic)
