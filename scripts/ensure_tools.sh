#!/usr/bin/env bash
# Install the command-line tools the tests use that are not Python packages, when missing:
# promtool and prometheus, from Debian's `prometheus` package, and the browser the web app's
# end-to-end tests drive, Debian's `chromium` (Playwright never downloads one), and `wrk`, the load
# generator `make bench` times single-operation requests with. The tests run their own Prometheus;
# the package's service must not run, so its start is refused during the install (policy-rc.d)
# and stopped afterwards if something started it anyway.
#
# With --cluster it installs instead what `make test-cluster` and `make cluster-postgres` run:
# Debian's `patroni` (and its patronictl), `etcd-server`, Patroni's configuration store, `haproxy`,
# the front of `make cluster`, and `iproute2` (`ip`, `tc`), with which `make chaos-cluster` cuts a
# worker off from the broker in a network namespace (scripts/netns.py). The
# cluster scripts start their own etcd and Patroni nodes; the packaged services must not run either.
set -euo pipefail

mode=default
case "${1:-}" in
  "") ;;
  --cluster) mode=cluster ;;
  *) echo "usage: $0 [--cluster]" >&2; exit 2 ;;
esac

missing=()
services=()
if [ "$mode" = cluster ]; then
  if ! command -v patroni >/dev/null 2>&1 || ! command -v patronictl >/dev/null 2>&1; then
    missing+=(patroni)
  fi
  if ! command -v etcd >/dev/null 2>&1; then
    missing+=(etcd-server)
  fi
  if [ ! -x /usr/sbin/haproxy ]; then
    missing+=(haproxy)
  fi
  if ! command -v ip >/dev/null 2>&1 || ! command -v tc >/dev/null 2>&1; then
    missing+=(iproute2)
  fi
  services=(etcd patroni haproxy)
else
  if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
    missing+=(prometheus)
  fi
  if [ ! -x /usr/bin/chromium ]; then
    missing+=(chromium)
  fi
  if ! command -v wrk >/dev/null 2>&1; then
    missing+=(wrk)
  fi
  services=(prometheus)
fi
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    exec sudo --preserve-env=PATH bash "$0" "$@"
  fi
  echo "ensure_tools: ${missing[*]} missing; install Debian's packages as root:" >&2
  echo "  apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive

# Debian's way to keep a package's postinst from starting its daemon: a policy-rc.d that says no.
policy=/usr/sbin/policy-rc.d
placed_policy=""
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 0755 "$policy"
  placed_policy=1
fi
cleanup() { if [ -n "$placed_policy" ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

install() { apt-get install -y -q --no-install-recommends "${missing[@]}"; }
# The package lists may be missing or stale on a fresh machine: update only when the install fails.
if ! install; then
  apt-get update -q
  install
fi

# Belt and braces: if an init system started a packaged service despite the policy, stop it.
for service in "${services[@]}"; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$service" 2>/dev/null; then
    systemctl stop "$service"
    systemctl disable --quiet "$service" || true
  elif [ -x "/etc/init.d/$service" ] && "/etc/init.d/$service" status >/dev/null 2>&1; then
    "/etc/init.d/$service" stop || true
  fi
done

if [ "$mode" = cluster ]; then
  patroni --version
  etcd --version | head -n 1
  /usr/sbin/haproxy -v | head -n 1
else
  promtool --version | head -n 1
  /usr/bin/chromium --version
  wrk --version 2>&1 | head -n 1 || true
fi
