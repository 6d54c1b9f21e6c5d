"""Sampling profiles of the gateway and worker processes while the bench loads them (py-spy).

py-spy attaches from outside (no change to the services) and writes collapsed stacks; the summary
ranks functions by the share of on-CPU samples whose stack holds them, which is what the docs quote.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def sampled(processes: Mapping[str, int], out_dir: Path, seconds: float) -> Iterator[None]:
    """Record each named process (children included) for ``seconds``; wait for the records on exit."""
    py_spy = shutil.which("py-spy") or str(Path(__file__).resolve().parent.parent / ".venv" / "bin" / "py-spy")
    out_dir.mkdir(parents=True, exist_ok=True)
    recorders = [
        subprocess.Popen(
            [
                py_spy,
                "record",
                "--pid",
                str(pid),
                "--subprocesses",
                "--nonblocking",
                "--rate",
                "200",
                "--duration",
                str(max(1, round(seconds))),
                "--format",
                "raw",
                "--output",
                str(out_dir / f"{name}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in processes.items()
    ]
    try:
        yield
    finally:
        for recorder in recorders:
            try:
                recorder.wait(timeout=seconds + 30)
            except subprocess.TimeoutExpired:
                recorder.kill()
                recorder.wait()


# Innermost frames that wait rather than work (py-spy's idle detection misses threads blocked in
# these): the loop's selector, pika's poller, the supervisor's wait, dramatiq's timers.
_WAITING = (
    "Condition.wait",
    "Selector.select",
    "PollPoller.poll",
    "Popen._wait",
    "worker_process (dramatiq",
    "_CtypesTimeoutManager.run",
    "sleep",
    "acquire",
)


def summary(collapsed: Path, top: int = 12) -> str:
    """Where the on-CPU samples went: functions by self time, and this project's functions (and the
    libraries it calls) by inclusive time. Samples whose innermost frame waits are left out."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = [_short(frame) for frame in stack.split(";")]
        if any(w in frames[-1] for w in _WAITING):
            continue
        count = int(count_text)
        total += count
        own[frames[-1]] += count
        for name in {f for f in frames if _interesting(f)}:
            inclusive[name] += count
    if not total:
        return f"{collapsed.stem}: no busy samples"
    lines = [f"{collapsed.stem}: {total} busy samples; self time"]
    lines += [f"  {count / total:6.1%}  {name}" for name, count in own.most_common(top)]
    lines.append(f"{collapsed.stem}: inclusive time in the project's code and what it calls")
    lines += [f"  {count / total:6.1%}  {name}" for name, count in inclusive.most_common(top)]
    return "\n".join(lines)


def _short(frame: str) -> str:
    # "function (path/to/package/module.py:123)" -> "function (package/module.py)"
    name, _, where = frame.partition(" (")
    if not where:
        return name
    path = Path(where.split(":")[0])
    return f"{name} ({path.parent.name}/{path.name})"


def _interesting(frame: str) -> bool:
    return not frame.startswith("process ") and any(
        part in frame
        for part in (
            "stockzen",
            "services.py",
            "ledger.py",
            "result_cache.py",
            "asyncpg/",
            "pydantic",
            "json/",
            "redis/",
            "aio_pika",
            "aiormq",
            "pika/",
            "dramatiq/",
        )
    )


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) used so far by ``pid`` and its live descendants, from ``/proc``;
    ``None`` where there is no ``/proc`` (not Linux)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process ended meanwhile
            continue
        fields = stat.rpartition(")")[2].split()  # after the command name, which may hold spaces
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent and child not in tree]
        tree.update(children)
        frontier.extend(children)
    return sum(times.get(member, 0.0) for member in tree)
