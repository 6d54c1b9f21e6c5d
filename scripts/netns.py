#!/usr/bin/env python3
"""A network namespace of its own for one of the cluster's processes, so that a partition can cut it off
from some servers while it still reaches the others (the worker cut off in ``chaos/run_cluster_chaos.py``).

The namespace (``sz-<id>``) is joined to this machine by a veth pair on a ``/30`` of 10.0.0.0/8 that
nothing here uses: this machine's end ``.1``, the namespace's ``.2`` and its default route. The engines
listen on 127.0.0.1 only, and RabbitMQ lets ``guest`` in from loopback only, so a forwarder on this
machine (``python scripts/netns.py forward``, a process of its own) listens on ``.1`` on each engine's
port and relays to 127.0.0.1: the process inside uses ``.1`` wherever the others use 127.0.0.1, and the
engines see a local client.

A cut is a kernel rule at both ends of the pair: ``tc`` u32 filters on a ``clsact`` qdisc match TCP to
the given ports as it arrives on this machine's end, and TCP from them as it arrives on the namespace's
end, and redirect those packets to an ``ifb`` device that is down, which drops them. Both directions,
so neither side gets a FIN or a RST, and each on arrival, so neither sender's TCP is told its packets
were dropped: each side learns of the cut only by its own timeouts, as behind a real partition. The
other ports go on flowing. (``action drop`` would say it more plainly, but needs ``act_gact``, which not every
kernel has built in; ``act_mirred`` and ``ifb`` are as common, and are what this project's machine has.)
Healing deletes the two qdiscs, and their filters with them.

Needs root and iproute2 (``ip``, ``tc``); :func:`unavailable` says why not when they are missing.
Standard library only.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv4Network
from typing import Any, Self

#: Where the pairs' /30s are taken from: 10.100.0.0 to 10.254.255.255, clear of the 10.0 to 10.99 that
#: docker, VPNs and cloud networks like to use.
_SECOND_OCTETS = range(100, 255)


def unavailable() -> str | None:
    """Why no namespace can be made here (not root, iproute2 missing), or ``None``."""
    if os.geteuid() != 0:
        return "not root"
    missing = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
    return f"{' and '.join(missing)} not installed (iproute2)" if missing else None


def networks_in_use(addresses: list[dict[str, Any]], routes: list[dict[str, Any]]) -> list[IPv4Network]:
    """The IPv4 networks of ``ip -j -4 addr`` and ``ip -j -4 route show table all`` (the default route aside)."""
    found = [
        ipaddress.ip_network(f"{info['local']}/{info['prefixlen']}", strict=False)
        for link in addresses
        for info in link.get("addr_info", [])
        if info.get("family", "inet") == "inet" and "local" in info
    ]
    for route in routes:
        destination = route.get("dst", "default")
        if destination != "default":
            with contextlib.suppress(ValueError):  # a destination that is no IPv4 network conflicts with none
                found.append(ipaddress.ip_network(destination, strict=False))
    return [network for network in found if isinstance(network, IPv4Network)]


def free_subnet(in_use: Iterable[IPv4Network], chooser: random.Random | None = None) -> IPv4Network:
    """A ``/30`` of 10.100-254.x.0 that overlaps none of ``in_use`` (tried in a random order, so that two
    runs at once are unlikely to pick the same; :class:`RuntimeError` if none is left)."""
    taken = list(in_use)
    chooser = chooser or random.SystemRandom()
    for _ in range(200):
        candidate = IPv4Network(f"10.{chooser.choice(_SECOND_OCTETS)}.{chooser.randrange(256)}.0/30")
        if not any(candidate.overlaps(network) for network in taken):
            return candidate
    raise RuntimeError("no free /30 in 10.100.0.0-10.254.255.255")


def via(url: str, host: IPv4Address) -> str:
    """``url`` (one or several, comma-separated, as ``AMQP_URL`` and a multi-host ``DATABASE_URL`` hold
    them) with 127.0.0.1 replaced by ``host``: the engines' addresses as a namespace reaches them."""
    return url.replace("127.0.0.1", str(host))


def cut_commands(host_end: str, inside: tuple[str, str], sink: str, ports: Sequence[int]) -> list[list[str]]:
    """The ``tc`` commands that drop TCP between the namespace ``inside[0]`` and ``ports`` of this machine.

    Each direction is dropped where it arrives, never where it leaves: a packet its sender's own qdisc
    drops is reported to the sender's TCP, which then gives the connection up within seconds, not what
    a partition somewhere in the network does. So: on ingress of ``host_end`` (this machine's end of the
    pair) what goes to the ports, and on ingress of ``inside[1]`` (the namespace's end) what comes from
    them, each by a ``clsact`` qdisc and u32 filters redirecting to an ``ifb`` device named ``sink`` on
    each side, kept down (a packet redirected to a device that is down is dropped).
    """
    namespace, inside_end = inside
    commands: list[list[str]] = []
    for prefix, device, field in (((), host_end, "dport"), (("-n", namespace), inside_end, "sport")):
        commands.append(["tc", *prefix, "qdisc", "add", "dev", device, "clsact"])
        commands += [
            [
                *("tc", *prefix, "filter", "add", "dev", device, "ingress", "protocol", "ip", "u32"),
                *("match", "ip", "protocol", "6", "0xff", "match", "ip", field, str(port), "0xffff"),
                *("action", "mirred", "egress", "redirect", "dev", sink),
            ]
            for port in ports
        ]
    return commands


def heal_commands(host_end: str, inside: tuple[str, str]) -> list[list[str]]:
    """The commands that remove a cut: both ``clsact`` qdiscs, and their filters with them."""
    namespace, inside_end = inside
    return [
        ["tc", "qdisc", "del", "dev", host_end, "clsact"],
        ["tc", "-n", namespace, "qdisc", "del", "dev", inside_end, "clsact"],
    ]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def _ip_json(*args: str) -> list[dict[str, Any]]:
    output = subprocess.run(["ip", "-j", *args], check=True, capture_output=True, text=True, timeout=10).stdout
    parsed: list[dict[str, Any]] = json.loads(output or "[]")
    return parsed


class Namespace:
    """A network namespace joined to this machine by a veth pair. A context manager: leaving it (or
    :meth:`remove`) deletes the namespace, the pair and the drop devices, whatever was made of them."""

    def __init__(self) -> None:
        tag = secrets.token_hex(4)
        self.name = f"sz-{tag}"
        self.host_end = f"szh-{tag}"  # this machine's end of the pair
        self._inside_end = f"szn-{tag}"
        self.sink = f"szd-{tag}"  # the ifb devices a cut redirects to, one each side (down: they drop)
        self.subnet: IPv4Network | None = None
        self.cut_ports: tuple[int, ...] = ()

    @property
    def host_address(self) -> IPv4Address:
        """This machine's address on the pair: what the namespace uses for 127.0.0.1."""
        return self._address(1)

    @property
    def inside_address(self) -> IPv4Address:
        """The namespace's address on the pair: where its listeners are reached from this machine."""
        return self._address(2)

    def _address(self, index: int) -> IPv4Address:
        if self.subnet is None:
            raise RuntimeError(f"namespace {self.name} not created")
        return self.subnet.network_address + index

    def create(self) -> Self:
        """Make the namespace, the pair and the drop devices (anything half-made is removed on failure)."""
        try:
            self.subnet = free_subnet(
                networks_in_use(_ip_json("-4", "addr"), _ip_json("-4", "route", "show", "table", "all"))
            )
            host, inside = f"{self.host_address}/30", f"{self.inside_address}/30"
            _ip("netns", "add", self.name)
            _ip("link", "add", self.host_end, "type", "veth", "peer", "name", self._inside_end)
            _ip("link", "set", self._inside_end, "netns", self.name)
            _ip("addr", "add", host, "dev", self.host_end)
            _ip("link", "set", self.host_end, "up")
            _ip("-n", self.name, "addr", "add", inside, "dev", self._inside_end)
            _ip("-n", self.name, "link", "set", self._inside_end, "up")
            _ip("-n", self.name, "link", "set", "lo", "up")
            _ip("-n", self.name, "route", "add", "default", "via", str(self.host_address))
            _ip("link", "add", self.sink, "type", "ifb")  # never set up
            _ip("-n", self.name, "link", "add", self.sink, "type", "ifb")  # goes with the namespace
        except BaseException:
            self.remove()
            raise
        return self

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside the namespace (``ip netns exec`` execs it: the process keeps its pid)."""
        return ["ip", "netns", "exec", self.name, *argv]

    def cut(self, ports: Sequence[int]) -> None:
        """Drop every TCP packet between the namespace and ``ports`` of this machine, both ways."""
        for command in cut_commands(self.host_end, (self.name, self._inside_end), self.sink, ports):
            subprocess.run(command, check=True, capture_output=True, timeout=10)
        self.cut_ports = tuple(ports)

    def heal(self) -> None:
        """Remove the cut (nothing to do if there is none)."""
        if self.cut_ports:
            for command in heal_commands(self.host_end, (self.name, self._inside_end)):
                subprocess.run(command, check=True, capture_output=True, timeout=10)
            self.cut_ports = ()

    def remove(self) -> None:
        """Delete the drop devices, the pair and the namespace; whatever is already gone is fine."""
        for command in (
            ["ip", "link", "del", self.sink],
            ["ip", "link", "del", self.host_end],  # takes the namespace's end with it
            ["ip", "netns", "del", self.name],
        ):
            subprocess.run(command, check=False, capture_output=True, timeout=10)
        self.cut_ports = ()

    def __enter__(self) -> Self:
        return self.create()

    def __exit__(self, *exc: object) -> None:
        self.remove()


# -- the forwarder ---------------------------------------------------------------------------------
async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()  # one side gone: the other is closed too (no protocol here relies on a half-close)


async def _relay(target: str, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        upstream_reader, upstream_writer = await asyncio.open_connection(target, port)
    except OSError:
        writer.close()
        return
    await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))


async def forward(listen: str, ports: Sequence[int], target: str = "127.0.0.1") -> None:
    """Relay every connection to ``listen``:port to ``target``:port, for each of ``ports``, until cancelled."""
    servers = [await asyncio.start_server(functools.partial(_relay, target, port), listen, port) for port in ports]
    print(f"forwarding {listen} to {target} on ports {', '.join(map(str, ports))}", flush=True)
    await asyncio.gather(*(server.serve_forever() for server in servers))


def main(argv: Sequence[str]) -> int:
    if len(argv) < 3 or argv[0] != "forward":
        print("usage: netns.py forward LISTEN_ADDRESS PORT...", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(forward(argv[1], [int(port) for port in argv[2:]]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
