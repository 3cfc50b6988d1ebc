"""py-consul's own test suite against the embedded registry.

This replaces the suite's root conftest.py (which starts Consul in Docker):
each test gets a fresh `shardscope registry` on a fresh loopback port, in
memory, killed after the test. The ACL-enabled instances the suite asks for
(`acl_consul_instance`) are skipped: the registry has no ACL system.
scripts/consul-compat.sh installs the suite and runs it with this file.
"""

from __future__ import annotations

import collections
import os
import socket
import subprocess
import time

import pytest
import requests

ConsulInstance = collections.namedtuple("ConsulInstance", ["container", "port", "version"])

BINARY = os.environ["SHARDSCOPE_BIN"]


@pytest.fixture(scope="session", autouse=True)
def _unset_consul_token():
    if "CONSUL_HTTP_TOKEN" in os.environ:
        del os.environ["CONSUL_HTTP_TOKEN"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_registry():
    port = _free_port()
    proc = subprocess.Popen(
        [BINARY, "registry", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 10
    while True:
        try:
            if requests.get(f"http://127.0.0.1:{port}/v1/status/leader", timeout=1).ok:
                break
        except requests.RequestException:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise RuntimeError(f"shardscope registry did not start on port {port}")
        time.sleep(0.02)
    version = requests.get(f"http://127.0.0.1:{port}/v1/agent/self", timeout=5).json()["Config"]["Version"]
    return ConsulInstance(proc, port, version)


@pytest.fixture
def consul_instance():
    instance = _start_registry()
    yield instance
    instance.container.kill()
    instance.container.wait()


@pytest.fixture
def acl_consul_instance():
    pytest.skip("out of scope: the embedded registry has no ACL system")


@pytest.fixture
def consul_port(consul_instance):
    return consul_instance.port, consul_instance.version
