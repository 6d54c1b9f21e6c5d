"""Which process groups a signal to one of the cluster's services must reach (``scripts/cluster_processes.py``)."""

from __future__ import annotations

import os

from scripts.cluster_processes import descendant_groups, running_processes

# pid: (parent, group). The worker (100, its own group) started dramatiq in a session of its own (110),
# whose worker process (111) is in dramatiq's group; 200 is someone else's.
PROCESSES = {
    1: (0, 1),
    100: (1, 100),
    110: (100, 110),
    111: (110, 110),
    112: (111, 110),
    200: (1, 200),
    201: (200, 201),
}


def test_the_groups_of_a_process_and_of_all_its_descendants_are_reached() -> None:
    assert descendant_groups(100, PROCESSES) == [100, 110]
    assert descendant_groups(110, PROCESSES) == [110]


def test_a_process_already_gone_has_no_groups() -> None:
    assert descendant_groups(999, PROCESSES) == []


def test_this_process_is_found_with_its_parent_and_group() -> None:
    assert running_processes()[os.getpid()] == (os.getppid(), os.getpgrp())
