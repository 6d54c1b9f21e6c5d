#!/usr/bin/env bash
# Install the command-line tools the tests use that are not Python packages, when missing:
# promtool and prometheus, from Debian's `prometheus` package, and the browser the web app's
# end-to-end tests drive, Debian's `chromium` (Playwright never downloads one), and `wrk`, the load
# generator `make bench` times single-operation requests with. The tests run their own Prometheus;
# the package's service must not run, so its start is refused during the install (policy-rc.d)
# and stopped afterwards if something started it anyway.
set -euo pipefail

missing=()
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  missing+=(prometheus)
fi
if [ ! -x /usr/bin/chromium ]; then
  missing+=(chromium)
fi
if ! command -v wrk >/dev/null 2>&1; then
  missing+=(wrk)
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

# Belt and braces: if an init system started the packaged service despite the policy, stop it.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
  systemctl stop prometheus
  systemctl disable --quiet prometheus || true
elif [ -x /etc/init.d/prometheus ] && /etc/init.d/prometheus status >/dev/null 2>&1; then
  /etc/init.d/prometheus stop || true
fi

promtool --version | head -n 1
/usr/bin/chromium --version
wrk --version 2>&1 | head -n 1 || true
