"""The migration Jobs in the namespace, as `inv db.jobs` lists them: name, revision, state and
age."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kubemigrate import units
from kubemigrate.kubernetes.job_manifest import MANAGED_BY, REVISION
from kubemigrate.kubernetes.jobs import Seen

if TYPE_CHECKING:
    from kubemigrate.kubernetes.kubectl import Kubectl


def listed(kubectl: Kubectl) -> list[dict[str, Any]]:
    """kubemigrate's Jobs in the namespace, oldest first."""
    found = kubectl.get("jobs", selector=f"{MANAGED_BY}=kubemigrate")
    items = list(found.get("items", []))
    return sorted(items, key=lambda job: str(job.get("metadata", {}).get("creationTimestamp", "")))


def describe(job: dict[str, Any]) -> tuple[str, str, str, str]:
    """Name, state, revision and age of a Job, for `inv db.jobs`."""
    seen = Seen(job=job)
    status = job.get("status", {})
    state = seen.finished or ("Running" if status.get("active") else "Pending")
    if state == "Failed":
        state += f" ({seen.condition('Failed').get('reason', '')})".replace(" ()", "")
    labels = job.get("metadata", {}).get("labels", {})
    return (
        str(job.get("metadata", {}).get("name", "")),
        state,
        str(labels.get(REVISION, "")),
        _age(str(job.get("metadata", {}).get("creationTimestamp", ""))),
    )


def _age(stamp: str) -> str:
    from datetime import UTC, datetime

    try:
        created = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return "?"
    return units.age((datetime.now(UTC) - created).total_seconds())
