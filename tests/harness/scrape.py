"""Read Prometheus text: the operator's /metrics and the kube-apiserver's (its count of write requests)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

# Verbs of apiserver_request_total that change an object (APPLY is a server-side apply).
WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"})


def metric_sum(text: str, name: str, **labels: str) -> float:
    """The sum of every sample called `name` whose labels include `labels`."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def metric_value(text: str, name: str) -> float | None:
    """The value of an unlabelled sample `name`, or None when it is not there."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    return None


def api_writes(apiserver_metrics: str, resource: str, group: str = "") -> float:
    """Write requests the kube-apiserver has served for `resource` (any subresource, any answer)."""
    total = 0.0
    for family in text_string_to_metric_families(apiserver_metrics):
        for sample in family.samples:
            labels = sample.labels
            if (
                sample.name == "apiserver_request_total"
                and labels.get("verb") in WRITE_VERBS
                and labels.get("resource") == resource
                and (not group or labels.get("group") == group)
            ):
                total += sample.value
    return total
