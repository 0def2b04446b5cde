"""Unit tests: kubectl's failures are told apart by what it prints (no cluster needed here;
the same cases run end to end through the real kubectl in tests/test_k8s_target.py)."""

import pytest

from kubemigrate.errors import NotFoundError
from kubemigrate.kubernetes.kubectl import Kubectl

KUBECTL = Kubectl("kubectl", None, "staging", "db")


@pytest.mark.parametrize(
    ("stderr", "expected"),
    [
        ('error: context "nope" does not exist', "kubeconfig has no context 'staging'"),
        (
            "E1124 03:01:02.123456   123 memcache.go:265] couldn't get current server API group "
            'list: Get "http://127.0.0.1:9/api": dial tcp 127.0.0.1:9: connect: connection '
            "refused\nThe connection to the server 127.0.0.1:9 was refused - did you specify the "
            "right host or port?",
            "cannot reach the Kubernetes API server of context 'staging'",
        ),
        (
            "error: You must be logged in to the server (Unauthorized)",
            "refused kubectl's credentials",
        ),
        (
            'Error from server (Forbidden): secrets "db" is forbidden: User "ci" cannot get '
            'resource "secrets"',
            "kubectl is not allowed to read Secret 'db' in namespace 'db'",
        ),
        ('Error from server (NotFound): secrets "db" not found', 'secrets "db" not found'),
        ("error: something else entirely", "kubectl failed to read Secret 'db'"),
    ],
)
def test_error_kinds(stderr: str, expected: str) -> None:
    error = KUBECTL.error(stderr, "read Secret 'db'")
    assert expected in error.message
    assert "\n" not in error.message


def test_not_found_is_its_own_type() -> None:
    assert isinstance(
        KUBECTL.error('Error from server (NotFound): x "y" not found', "get"), NotFoundError
    )


def test_klog_prefix_is_dropped() -> None:
    error = KUBECTL.error(
        "E1124 03:01:02.123456   123 portforward.go:413] an error occurred "
        "forwarding 5432 -> 5432: lost connection",
        "forward",
    )
    assert "portforward.go" not in error.message
    assert "lost connection" in error.message
