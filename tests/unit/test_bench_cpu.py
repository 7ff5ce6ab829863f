"""The benchmarks' CPU accounting (bench/cpu.py): what B4 explains its rates with."""

from __future__ import annotations

import subprocess
import sys
import time

import psycopg

from bench import cpu
from tests.pg import PostgresServer

BURN = "import time\nend = time.process_time() + {seconds}\nwhile time.process_time() < end: pass\n"


def test_a_live_process_is_counted_while_it_runs() -> None:
    # The child burns only once told to (after start()), says when it is done, then sleeps: no wall-clock guess,
    # however loaded the machine.
    script = "import sys\nsys.stdin.readline()\n" + BURN.format(seconds=0.4) + "print('burnt', flush=True)\n"
    script += "time.sleep(60)"
    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        split = cpu.CpuSplit({"child": cpu.processes(lambda: [child.pid]), "idle": cpu.processes(list)})
        split.start()
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "burnt"
        seconds = split.stop()
    finally:
        child.kill()
        child.wait()
    assert 0.35 <= seconds["child"] <= 5.0
    assert seconds["idle"] == 0


def test_a_child_waited_for_in_the_window_is_counted_by_its_children() -> None:
    split = cpu.CpuSplit({"children": cpu.its_children})
    split.start()
    subprocess.run([sys.executable, "-c", BURN.format(seconds=0.3)], check=True)
    assert 0.25 <= split.stop()["children"] <= 2.0


def test_a_process_gone_reads_as_nothing_rather_than_failing() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert cpu.processes(lambda: [child.pid])() == 0.0


def test_per_item_figures_and_their_description() -> None:
    split = cpu.per_item_ms({"api": 0.9, "workers": 1.2, "postgresql": 0.6}, 600)
    assert split == {"api": 1.5, "workers": 2.0, "postgresql": 1.0, "total": 4.5}
    assert cpu.described(split) == "api 1.50 + workers 2.00 + postgresql 1.00"


def test_postgresql_counts_the_backends_of_connections_that_closed(postgres_server: PostgresServer) -> None:
    # Each connection starts a backend and ends it: its CPU reaches the postmaster's reaped children.
    reading = cpu.postgres(postgres_server.data)
    before = reading()
    for _ in range(20):
        with psycopg.connect(postgres_server.dsn(), autocommit=True) as conn:
            conn.execute("SELECT count(*) FROM pg_class").fetchone()
    time.sleep(0.2)  # the postmaster reaps each backend once it has exited
    assert reading() - before > 0.01
