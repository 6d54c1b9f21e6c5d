"""The pure parts of ``scripts/netns.py``: which /30 a namespace's pair gets, how the engines' URLs are
rewritten for it, and the ``tc`` commands that cut it off and heal it (the kernel side is exercised by
the cluster chaos run, ``tests/integration/infra/test_cluster.py``)."""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import pytest

from scripts.netns import cut_commands, free_subnet, heal_commands, networks_in_use, via

# As `ip -j -4 addr` and `ip -j -4 route show table all` print them (abridged).
ADDRESSES: list[dict[str, Any]] = [
    {"ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8}]},
    {"ifname": "eth0", "addr_info": [{"family": "inet", "local": "10.120.4.7", "prefixlen": 16}]},
    {"ifname": "ifb0", "addr_info": []},
]
ROUTES: list[dict[str, Any]] = [
    {"dst": "default", "gateway": "10.120.0.1", "dev": "eth0"},
    {"dst": "10.120.0.0/16", "dev": "eth0"},
    {"type": "local", "dst": "10.200.3.1", "dev": "szh-1"},
    {"type": "broadcast", "dst": "127.255.255.255", "dev": "lo"},
]


def test_the_networks_in_use_are_those_of_the_addresses_and_routes_but_the_default_route() -> None:
    found = set(networks_in_use(ADDRESSES, ROUTES))

    assert found == {
        IPv4Network("127.0.0.0/8"),
        IPv4Network("10.120.0.0/16"),
        IPv4Network("10.200.3.1/32"),
        IPv4Network("127.255.255.255/32"),
    }


def test_a_free_subnet_is_a_slash_30_in_10_100_and_up_that_overlaps_nothing_in_use() -> None:
    in_use = [IPv4Network("10.0.0.0/9"), IPv4Network("10.128.0.0/10")]  # 10.0-10.191 taken

    picked = {free_subnet(in_use, random.Random(seed)) for seed in range(50)}

    assert all(subnet.prefixlen == 30 and subnet.network_address.packed[3] == 0 for subnet in picked)
    assert all(IPv4Network("10.192.0.0/10").supernet_of(subnet) for subnet in picked)
    assert len(picked) > 40  # random, so that two runs at once are unlikely to collide


def test_no_free_subnet_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="no free /30"):
        free_subnet([IPv4Network("10.0.0.0/8")], random.Random(1))


def test_the_engines_urls_point_at_the_hosts_end_of_the_pair() -> None:
    host = IPv4Address("10.201.9.1")
    amqp = "amqp://guest:guest@127.0.0.1:5981/?heartbeat=5,amqp://guest:guest@127.0.0.1:5982/?heartbeat=5"
    database = "postgresql://stockzen_app@127.0.0.1:5841,127.0.0.1:5842/stockzen?target_session_attrs=read-write"

    assert via(amqp, host) == amqp.replace("127.0.0.1", "10.201.9.1")
    assert via(database, host) == (
        "postgresql://stockzen_app@10.201.9.1:5841,10.201.9.1:5842/stockzen?target_session_attrs=read-write"
    )
    assert via("redis://127.0.0.1:6379/0", host) == "redis://10.201.9.1:6379/0"


def test_a_cut_drops_tcp_to_and_from_each_port_where_it_arrives_and_nothing_else() -> None:
    commands = [" ".join(command) for command in cut_commands("szh-1", ("sz-1", "szn-1"), "szd-1", [5981, 5982])]

    match = "protocol ip u32 match ip protocol 6 0xff match ip {} {} 0xffff action mirred egress redirect dev szd-1"
    assert commands == [
        # arriving on this machine's end, from the namespace: to the ports
        "tc qdisc add dev szh-1 clsact",
        f"tc filter add dev szh-1 ingress {match.format('dport', 5981)}",
        f"tc filter add dev szh-1 ingress {match.format('dport', 5982)}",
        # arriving on the namespace's end: from the ports
        "tc -n sz-1 qdisc add dev szn-1 clsact",
        f"tc -n sz-1 filter add dev szn-1 ingress {match.format('sport', 5981)}",
        f"tc -n sz-1 filter add dev szn-1 ingress {match.format('sport', 5982)}",
    ]
    assert not any(" egress protocol" in command for command in commands)  # never where a packet leaves


def test_healing_removes_both_qdiscs_and_the_filters_with_them() -> None:
    assert heal_commands("szh-1", ("sz-1", "szn-1")) == [
        ["tc", "qdisc", "del", "dev", "szh-1", "clsact"],
        ["tc", "-n", "sz-1", "qdisc", "del", "dev", "szn-1", "clsact"],
    ]
