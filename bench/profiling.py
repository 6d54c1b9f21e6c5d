"""Sampling profiles of the gateway and worker processes while the bench loads them (py-spy).

py-spy attaches from outside (no change to the services) and writes collapsed stacks; the summary
ranks functions by the share of on-CPU samples whose stack holds them, which is what the docs quote.
"""

from __future__ import annotations

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


def summary(collapsed: Path, top: int = 18) -> str:
    """The functions found in the most samples (inclusive; py-spy leaves idle threads out)."""
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = stack.split(";")
        count = int(count_text)
        total += count
        for name in {_short(frame) for frame in frames}:
            inclusive[name] += count
    lines = [f"{collapsed.stem}: {total} busy samples"]
    for name, count in inclusive.most_common(top):
        lines.append(f"  {count / total:6.1%}  {name}" if total else f"  {name}")
    return "\n".join(lines)


def _short(frame: str) -> str:
    # "function (path/to/module.py:123)" -> "function (module.py)"
    name, _, where = frame.partition(" (")
    return f"{name} ({Path(where.split(':')[0]).name})" if where else name
