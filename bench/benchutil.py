"""Helpers the benchmark scripts share (they run as `bench/NAME.py`, so this
directory is on their import path)."""
import socket
import time


def free_port():
    """A TCP port nothing listens on now (127.0.0.1)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, secs=10):
    """Waits until something listens on `port`; exits the script if nothing does."""
    until = time.time() + secs
    while time.time() < until:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")
