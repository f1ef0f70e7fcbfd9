"""Upload rendered dashboards, datasources and alert rules with the ``grafana-client`` API."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from gateway.errors import MedgwError

FOLDER_UID = "medgw"


class GrafanaPushError(MedgwError):
    """Grafana refused or could not be reached; the message names the step."""


@dataclass
class PushResult:
    """What was uploaded."""

    folder: str = FOLDER_UID
    dashboards: list[str] = field(default_factory=list)
    datasources: list[str] = field(default_factory=list)
    alert_rules: list[str] = field(default_factory=list)


def connect(url: str, token: str, timeout_s: float = 10.0) -> Any:
    """Return a GrafanaApi for ``url`` (scheme and host required) authenticated by token."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise GrafanaPushError(f"--url must be http(s)://host[:port][/path], got {url!r}")
    from grafana_client import GrafanaApi

    return GrafanaApi.from_url(url, credential=token, timeout=timeout_s)


def _call(step: str, func: Any, *args: Any, **kwargs: Any) -> Any:
    from grafana_client.client import GrafanaException

    try:
        return func(*args, **kwargs)
    except GrafanaException as err:
        raise GrafanaPushError(f"grafana {step}: HTTP {err.status_code}: {err.message}") from err
    except OSError as err:  # connection refused, DNS, TLS ...
        raise GrafanaPushError(f"grafana {step}: {err}") from err
    except Exception as err:  # niquests raises its own connection errors
        if type(err).__module__.startswith(("niquests", "urllib3")):
            raise GrafanaPushError(f"grafana {step}: {err}") from err
        raise


def _exists(step: str, func: Any, *args: Any) -> bool:
    from grafana_client.client import GrafanaClientError

    try:
        _call(step, func, *args)
        return True
    except GrafanaPushError as err:
        if isinstance(err.__cause__, GrafanaClientError) and err.__cause__.status_code == 404:
            return False
        raise


def push(api: Any, dashboards: dict[str, dict[str, Any]], datasources: list[dict[str, Any]],
         alerts: dict[str, Any]) -> PushResult:
    """Create/update the folder, datasources (by uid), dashboards and alert rules."""
    result = PushResult()
    if not _exists("get folder", api.folder.get_folder, FOLDER_UID):
        _call("create folder", api.folder.create_folder, "medgw", uid=FOLDER_UID)
    for ds in datasources:
        if _exists("get datasource", api.datasource.get_datasource_by_uid, ds["uid"]):
            _call("update datasource", api.datasource.update_datasource_by_uid, ds["uid"], ds)
        else:
            _call("create datasource", api.datasource.create_datasource, ds)
        result.datasources.append(ds["uid"])
    for board in dashboards.values():
        _call(f"dashboard {board['uid']}", api.dashboard.update_dashboard,
              {"dashboard": board, "folderUid": FOLDER_UID, "overwrite": True,
               "message": "medgw grafana push"})
        result.dashboards.append(board["uid"])
    for group in alerts.get("groups", []):
        for rule in group["rules"]:
            body = {**rule, "folderUID": FOLDER_UID, "ruleGroup": group["name"],
                    "orgID": group.get("orgId", 1)}
            prov = api.alertingprovisioning
            if _exists("get alert rule", prov.get_alertrule, rule["uid"]):
                _call(f"alert rule {rule['uid']}", prov.update_alertrule, rule["uid"], body)
            else:
                _call(f"alert rule {rule['uid']}", prov.create_alertrule, body)
            result.alert_rules.append(rule["uid"])
    return result
