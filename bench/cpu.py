"""CPU accounting of a benchmark: run a command, read /proc, say how many CPU seconds each side used.

    .venv/bin/python bench/cpu.py -- .venv/bin/python bench/ingest.py --patients 2000 --clients 8

Wall-clock rates swing by 30 % and more when the machine is shared; the CPU seconds a process was given swing
far less, so comparing two versions of the server by CPU per resource survives a busy machine. The command's
process tree is sampled every 0.2 s from /proc/<pid>/stat (utime + stime, proc(5)): ``server`` is every
process of a ``fhir-server serve`` or ``python -m fhir_server.cli serve``, its uvicorn workers included;
``mongod`` the database, split into the time while a server ran (the server's writes) and the rest (the raw
PyMongo side); ``client`` the benchmark itself. A process's last sample is its total, so a worker that exits between two
samples loses at most 0.2 s of its CPU.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
SERVER_MARKS = ("fhir-server serve", "fhir_server.cli serve", "uvicorn", "fhir_server.api")


@dataclass
class Sample:
    ppid: int
    cpu: float  # seconds (utime + stime)
    cmdline: str


@dataclass
class Accounting:
    cpu: dict[int, float] = field(default_factory=dict)  # last CPU seconds seen per pid
    kind: dict[int, str] = field(default_factory=dict)
    mongod_at_server_start: float | None = None
    mongod_at_server_end: float | None = None

    def total(self, kind: str) -> float:
        return sum(cpu for pid, cpu in self.cpu.items() if self.kind[pid] == kind)


def snapshot() -> dict[int, Sample]:
    samples: dict[int, Sample] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        samples[int(entry.name)] = Sample(ppid=int(fields[1]), cpu=(int(fields[11]) + int(fields[12])) / TICKS,
                                          cmdline=cmdline)
    return samples


def descendants(root: int, samples: dict[int, Sample]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, sample in samples.items():
        children.setdefault(sample.ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def classify(pid: int, samples: dict[int, Sample], root: int) -> str:
    """``server`` when the process or an ancestor below ``root`` is a FHIR server, else mongod or client."""
    current = pid
    while current in samples and current != root:
        cmdline = samples[current].cmdline
        if "mongod" in cmdline.split(" ", 1)[0]:
            return "mongod"
        if any(mark in cmdline for mark in SERVER_MARKS):
            return "server"
        current = samples[current].ppid
    return "client"


def account(command: list[str], interval: float) -> tuple[int, Accounting]:
    proc = subprocess.Popen(command)
    acc = Accounting()
    server_running = False
    while True:
        samples = snapshot()
        tree = [pid for pid in descendants(proc.pid, samples) if pid in samples]
        for pid in tree:
            acc.kind.setdefault(pid, classify(pid, samples, proc.pid))
            acc.cpu[pid] = samples[pid].cpu
        now_serving = any(acc.kind[pid] == "server" for pid in tree)
        if now_serving and not server_running and acc.mongod_at_server_start is None:
            acc.mongod_at_server_start = acc.total("mongod")
        if server_running and not now_serving:
            acc.mongod_at_server_end = acc.total("mongod")
        server_running = now_serving
        if proc.poll() is not None:
            return proc.returncode, acc
        time.sleep(interval)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the benchmark command, after --")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    code, acc = account(command, args.interval)
    mongod = acc.total("mongod")
    start = acc.mongod_at_server_start or 0.0
    end = acc.mongod_at_server_end if acc.mongod_at_server_end is not None else mongod
    print(f"cpu: server {acc.total('server'):.1f} s, mongod while serving {end - start:.1f} s, "
          f"mongod otherwise {mongod - (end - start):.1f} s, client {acc.total('client'):.1f} s")
    sys.exit(code)


if __name__ == "__main__":
    main()
