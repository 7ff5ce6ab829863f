"""wrk (the HTTP load generator of B1): installed from Debian when missing and we are root, run and parsed."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.servers import TOKEN

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def ensure_wrk() -> str:
    """The path of wrk; as root on Debian/Ubuntu it is installed (`apt-get install -y wrk`) when absent."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-qq", "wrk"]
        if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, check=False)
            subprocess.run(install, env=env, capture_output=True, check=False)
        found = shutil.which("wrk")
        if found:
            return found
    raise RuntimeError(
        "wrk is not installed and could not be installed here; install it (Debian/Ubuntu: `apt-get install -y wrk`)"
    )


@dataclass(frozen=True)
class WrkResult:
    requests_per_s: float
    requests: int
    p50_ms: float
    p99_ms: float
    errors: int  # socket errors plus non-2xx/3xx responses


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not match:
        raise ValueError(f"unexpected wrk duration {text!r}")
    return float(match[1]) * _UNITS[match[2]]


def run_wrk(url: str, seconds: int, threads: int = 2, connections: int = 32) -> WrkResult:
    command = [
        ensure_wrk(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "-H",
        f"Authorization: Bearer {TOKEN}",
        url,
    ]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE)
    if not (rate and total and p50 and p99):
        raise RuntimeError(f"could not parse wrk's output:\n{out}")
    errors = 0
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non_2xx:
        errors += int(non_2xx[1])
    return WrkResult(float(rate[1]), int(total[1]), _ms(p50[1]), _ms(p99[1]), errors)


POST_SCRIPT = Path(__file__).with_name("post_installs.lua")


def post_installs(base_url: str, zone_id: str, package_id: str, count: int, clients: int, prefix: str) -> None:
    """POST ``count`` installs of the package, each with inputs ``{"run": "<prefix>-<client>-<n>"}``, from
    ``clients`` connections that each send one request at a time; raise unless every one was accepted (202).

    wrk does the sending: a load generator in C costs ~50 µs of CPU a request, where an httpx client costs over
    1 ms. On a 2-core machine the client's CPU is taken from the server it measures (procrastinate's side of B4
    defers its jobs in one call)."""
    command = [
        ensure_wrk(),
        f"-t{clients}",
        f"-c{clients}",  # one connection per thread: exactly its share, never a request more
        "-d600s",  # an upper bound: the script stops every thread after its share
        "-s",
        str(POST_SCRIPT),
        "-H",
        f"Authorization: Bearer {TOKEN}",
        base_url,
        "--",
        str(count),
        f"/zones/{zone_id}/installs",
        package_id,
        prefix,
        str(clients),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        lines: list[str] = []
        finished = 0
        while finished < clients and (line := process.stdout.readline()):
            lines.append(line)
            finished += line.strip() == "ZONECAT thread done"
        process.send_signal(signal.SIGINT)  # wrk would otherwise sleep out its -d: its summary follows at once
        rest, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    out = "".join(lines) + rest
    found = re.search(r"^ZONECAT accepted=(\d+) refused=(\d+)$", out, re.MULTILINE)
    if process.returncode != 0 or not found:
        raise RuntimeError(f"wrk exited with {process.returncode}; its output:\n{out}")
    accepted, refused = int(found[1]), int(found[2])
    if accepted != count or refused:
        raise RuntimeError(f"wrk: {accepted} installs accepted, {refused} refused, {count} sent:\n{out}")
