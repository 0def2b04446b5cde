"""port-forward and exec through the real kubectl and the test server: several connections in
one tunnel (in sequence and in parallel), a 50 MB transfer checked by sha256, refused ports,
exit codes, binary stdin and stdout."""

import hashlib
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.kubeapi.api import Container, KubeAPIServer

NS = "streams"
MB = 1_000_000


class EchoServer:
    """A TCP server on 127.0.0.1 that sends back what it receives."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(1 << 16):
                conn.sendall(data)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def kubectl(tmp_path: Path) -> Iterator[tuple[KubeAPIServer, list[str], dict[str, str]]]:
    echo = EchoServer()
    with KubeAPIServer() as api:
        api.add_namespace(NS)
        api.add_pod(
            NS,
            "app-0",
            labels={"app": "app"},
            containers=[
                Container("app", ports={"web": 8080, "closed": 9999}, env={"GREETING": "hi there"})
            ],
            port_targets={8080: ("127.0.0.1", echo.port)},
        )
        api.add_service(
            NS,
            "app",
            selector={"app": "app"},
            ports=[{"name": "web", "port": 80, "targetPort": "web"}],
        )
        config = api.write_kubeconfig(tmp_path)
        argv = ["kubectl", "--kubeconfig", str(config), "--namespace", NS]
        env = {**os.environ, "KUBECACHEDIR": str(tmp_path / "cache")}
        yield api, argv, env
    echo.close()


class Tunnel:
    def __init__(self, argv: list[str], env: dict[str, str], target: str, port: str) -> None:
        self.proc = subprocess.Popen(
            [*argv, "port-forward", target, f":{port}", "--address", "127.0.0.1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        self.line = self.proc.stdout.readline()
        self.port = int(self.line.split("127.0.0.1:")[1].split()[0])

    def close(self) -> str:
        self.proc.terminate()
        _, err = self.proc.communicate(timeout=10)
        return err


def roundtrip(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:

        def send() -> None:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        received = bytearray()
        while chunk := sock.recv(1 << 20):
            received += chunk
        sender.join()
    return bytes(received)


def test_port_forward_through_a_service(kubectl) -> None:
    _, argv, env = kubectl
    tunnel = Tunnel(argv, env, "svc/app", "80")
    try:
        assert tunnel.line.startswith("Forwarding from 127.0.0.1:")
        assert tunnel.line.strip().endswith("-> 8080")  # the Service's named targetPort
        for i in range(5):  # in sequence
            assert roundtrip(tunnel.port, b"ping %d" % i) == b"ping %d" % i
        with ThreadPoolExecutor(8) as pool:  # in parallel
            payloads = [os.urandom(200_000 + i) for i in range(8)]
            assert list(pool.map(lambda p: roundtrip(tunnel.port, p), payloads)) == payloads
    finally:
        tunnel.close()


def test_port_forward_50_mb(kubectl) -> None:
    _, argv, env = kubectl
    tunnel = Tunnel(argv, env, "pod/app-0", "8080")
    try:
        payload = os.urandom(50 * MB)
        started = time.perf_counter()
        echoed = roundtrip(tunnel.port, payload)
        elapsed = time.perf_counter() - started
        assert hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()
        print(f"\n50 MB each way through the tunnel in {elapsed:.2f}s")
    finally:
        tunnel.close()


def test_port_forward_to_a_closed_port_drops_the_tunnel(kubectl) -> None:
    _, argv, env = kubectl
    tunnel = Tunnel(argv, env, "pod/app-0", "9999")
    try:
        with socket.create_connection(("127.0.0.1", tunnel.port), timeout=10) as sock:
            assert sock.recv(10) == b""
        tunnel.proc.wait(timeout=10)
    finally:
        err = tunnel.close()
    assert "connection refused" in err


def test_exec_streams_and_exit_code(kubectl) -> None:
    _, argv, env = kubectl
    result = subprocess.run(
        [*argv, "exec", "app-0", "--", "sh", "-c", 'echo "$GREETING"; echo oops >&2; exit 3'],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert result.returncode == 3
    assert result.stdout == "hi there\n"
    assert "oops" in result.stderr


def test_exec_binary_stdin_round_trip(kubectl) -> None:
    _, argv, env = kubectl
    payload = os.urandom(5 * MB)
    result = subprocess.run(
        [*argv, "exec", "-i", "app-0", "--", "cat"],
        input=payload,
        capture_output=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert hashlib.sha256(result.stdout).digest() == hashlib.sha256(payload).digest()


def test_exec_missing_command_and_container(kubectl) -> None:
    _, argv, env = kubectl
    missing = subprocess.run(
        [*argv, "exec", "app-0", "--", "no-such-binary"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert missing.returncode == 126 and "no-such-binary" in missing.stdout + missing.stderr
    container = subprocess.run(
        [*argv, "exec", "app-0", "-c", "nope", "--", "true"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert container.returncode != 0 and "container nope is not valid" in container.stderr
