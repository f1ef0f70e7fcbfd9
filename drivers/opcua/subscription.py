"""The one subscription of a session and its monitored items (created, refused, deleted)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from asyncua import Client, ua

from drivers.opcua.mapping import chunk_by_stream
from drivers.opcua.options import OpcUaOptions
from drivers.opcua.streams import Binding, stream_of

# Most monitored items per CreateMonitoredItems request; a stream is never split over two
# requests (chunk_by_stream), so one carrier with more items than this goes alone.
ITEM_BATCH = 1000


def keepalive_count(options: OpcUaOptions) -> int:
    """Publishing intervals per keep-alive: about one keep-alive a second."""
    return max(1, math.ceil(1000.0 / options.publishing_interval_ms))


def keepalive_s(options: OpcUaOptions) -> float:
    """Seconds between keep-alives of an idle subscription."""
    return keepalive_count(options) * options.publishing_interval_ms / 1000.0


async def create_subscription(client: Client, options: OpcUaOptions,
                              callback: Callable[[ua.PublishResult], None]) -> int:
    """Create the session's subscription; return its id."""
    keepalive = keepalive_count(options)
    params = ua.CreateSubscriptionParameters(
        RequestedPublishingInterval=options.publishing_interval_ms,
        RequestedLifetimeCount=keepalive * 10,
        RequestedMaxKeepAliveCount=keepalive,
        MaxNotificationsPerPublish=0,
        PublishingEnabled=True,
        Priority=0,
    )
    result = await client.uaclient.create_subscription(params, callback)
    return int(result.SubscriptionId)


def item_request(binding: Binding, options: OpcUaOptions) -> ua.MonitoredItemCreateRequest:
    """The CreateMonitoredItems entry of one binding (value attribute, reporting)."""
    params = ua.MonitoringParameters(
        ClientHandle=binding.handle, SamplingInterval=options.sampling_interval_ms,
        QueueSize=options.queue_size, DiscardOldest=True)
    if options.deadband > 0:
        params.Filter = ua.DataChangeFilter(
            Trigger=ua.DataChangeTrigger.StatusValue,
            DeadbandType=ua.DeadbandType.Absolute, DeadbandValue=options.deadband)
    return ua.MonitoredItemCreateRequest(
        ItemToMonitor=ua.ReadValueId(NodeId=binding.variable.node_id,
                                     AttributeId=ua.AttributeIds.Value),
        MonitoringMode=ua.MonitoringMode.Reporting, RequestedParameters=params)


async def monitor(client: Client, subscription_id: int, options: OpcUaOptions,
                  bindings: list[Binding], log: logging.Logger) -> list[Binding]:
    """Create monitored items in batches; return the bindings the server refused.

    A batch holds whole streams: the initial values of one carrier then arrive in one
    publish response and become one row, not two rows of one source time.
    """
    refused = []
    for chunk in chunk_by_stream(bindings, stream_of, ITEM_BATCH):
        params = ua.CreateMonitoredItemsParameters(
            SubscriptionId=subscription_id,
            TimestampsToReturn=ua.TimestampsToReturn.Both,
            ItemsToCreate=[item_request(b, options) for b in chunk])
        results = await client.uaclient.create_monitored_items(params)
        for binding, result in zip(chunk, results, strict=True):
            if result.StatusCode.is_good():
                binding.item_id = result.MonitoredItemId
            else:
                refused.append(binding)
                log.warning("OPC UA server %s: cannot monitor %s: %s", options.endpoint,
                            binding.variable.path, result.StatusCode.name)
    return refused


async def unmonitor(client: Client, subscription_id: int, bindings: list[Binding],
                    log: logging.Logger) -> None:
    """Delete the monitored items of bindings (items of deleted nodes may be gone already)."""
    ids = [b.item_id for b in bindings if b.item_id is not None]
    if not ids:
        return
    params = ua.DeleteMonitoredItemsParameters(SubscriptionId=subscription_id,
                                               MonitoredItemIds=ids)
    try:
        await client.uaclient.delete_monitored_items(params)
    except ua.UaStatusCodeError as err:
        log.debug("delete_monitored_items: %s", err)
