"""What the cluster chaos run reads from the logs after cutting a worker off from the broker
(``chaos/run_cluster_chaos.py``, :class:`PartitionSeen`): which of the broker's closings were the cut
worker's, when the worker noticed, and which of its batches the other worker got again."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from chaos.run_cluster_chaos import PartitionSeen

CUT_AT = datetime(2026, 12, 4, 7, 13, 0, tzinfo=UTC).timestamp()


def _service_line(seconds: float, message: str, **extra: str) -> str:
    when = datetime.fromtimestamp(CUT_AT + seconds, UTC).isoformat(timespec="milliseconds")
    return json.dumps({"time": when, "level": "info", "message": message, **extra})


def _rabbit_line(seconds: float, text: str) -> str:
    return f"{datetime.fromtimestamp(CUT_AT + seconds, UTC).isoformat(sep=' ', timespec='microseconds')} {text}"


def _closing(seconds: float, name: str) -> str:
    return _rabbit_line(
        seconds, f"[error] <0.599.0> closing AMQP connection <0.599.0> (127.0.0.1:36828 -> 127.0.0.1:5981 - {name}):"
    )


def test_the_broker_closings_the_worker_noticing_and_the_redeliveries_are_read_from_the_logs(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "worker-a.log").write_text(
        "\n".join(
            [
                _service_line(-2, "batch applied", message_id="before"),  # acked before the cut
                _service_line(0.5, "batch applied", message_id="behind-1"),  # committed behind the cut
                _service_line(0.7, "batch applied", message_id="behind-2"),
                _service_line(0.9, "batch applied", message_id="behind-3"),  # not redelivered (acked in time)
                "not json: dramatiq's own start-up line",
                _service_line(
                    14.5, "Consumer encountered a connection error: No activity or too many missed heartbeats"
                ),
                _service_line(16.0, "Consumer encountered a connection error: timed out"),
                _service_line(40, "batch applied", message_id="after-heal"),
            ]
        )
    )
    (logs / "worker-b.log").write_text(
        "\n".join(
            _service_line(seconds, "batch applied", message_id=message)
            for seconds, message in ((12, "behind-2"), (11.5, "behind-1"), (-1, "before"), (12, "x"))
        )
    )
    rabbit = tmp_path / "rabbit-a@localhost.log"
    rabbit.write_text(
        "\n".join(
            [
                _closing(-30, "worker-a"),  # an earlier fault's
                _closing(9.2, "worker-a"),
                _rabbit_line(9.2, "[error] <0.599.0> missed heartbeats from client, timeout: 5s"),
                _closing(10.1, "worker-b"),  # the other worker's idle connection: not this cut's
                _closing(11.0, "worker-a"),
                _closing(30, "worker-a"),  # after the heal
            ]
        )
    )

    seen = PartitionSeen.read(logs, [rabbit, tmp_path / "absent.log"], "worker-a", CUT_AT, 25)

    assert seen.broker_closed == pytest.approx([9.2, 11.0])
    assert seen.worker_noticed == pytest.approx(14.5)
    assert seen.redelivered == pytest.approx([11.5, 12])
    assert str(seen) == (
        "the broker closed its 2 connections by 11.0 s, the worker noticed after 14.5 s; 2 batches it committed"
        " behind the cut were redelivered to the other worker, from 11.5 s"
    )


def test_a_cut_nobody_noticed_says_so(tmp_path: Path) -> None:
    (tmp_path / "worker-a.log").write_text(_service_line(1, "batch applied", message_id="m"))

    seen = PartitionSeen.read(tmp_path, [], "worker-a", CUT_AT, 25)

    assert (seen.broker_closed, seen.worker_noticed, seen.redelivered) == ([], None, [])
    assert str(seen) == (
        "the broker closed none of its connections, the worker noticed after never; 0 batches it committed"
        " behind the cut were redelivered to the other worker"
    )
