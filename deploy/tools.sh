#!/usr/bin/env bash
# Command-line tools the alerting tests need, from Debian's packages:
#   promtool  (package `prometheus`)               check and unit-test deploy/prometheus/
#   amtool    (package `prometheus-alertmanager`)  check deploy/alertmanager/ routing
#
#   bash deploy/tools.sh
#
# Idempotent: installs only what is missing (as root, or through sudo). The
# packages also bring a Prometheus and an Alertmanager server with system
# services; only the command-line tools are wanted, so any service the install
# started is stopped and kept from starting at boot.
set -euo pipefail

log() { echo "[tools] $*"; }
die() { echo "[tools] ERROR: $*" >&2; exit 1; }

# command -> Debian package providing it
declare -A PACKAGE_OF=(
  [promtool]=prometheus
  [amtool]=prometheus-alertmanager
)
# Debian package -> the service it installs
declare -A SERVICE_OF=(
  [prometheus]=prometheus
  [prometheus-alertmanager]=prometheus-alertmanager
)

if [[ $EUID -eq 0 ]]; then
  as_root() { "$@"; }
elif command -v sudo >/dev/null 2>&1; then
  as_root() { sudo "$@"; }
else
  as_root() { die "need root to run: $*"; }
fi

missing=()
for tool in "${!PACKAGE_OF[@]}"; do
  if command -v "$tool" >/dev/null 2>&1; then
    log "$tool: $(command -v "$tool")"
  else
    missing+=("${PACKAGE_OF[$tool]}")
  fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi

log "installing ${missing[*]}"
as_root apt-get update -q
as_root env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -q --no-install-recommends "${missing[@]}"

# Stop and disable the servers the packages come with.
for package in "${missing[@]}"; do
  service="${SERVICE_OF[$package]}"
  if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
    as_root systemctl disable --now "$service" >/dev/null 2>&1 || true
  else
    as_root service "$service" stop >/dev/null 2>&1 || true
    as_root update-rc.d "$service" disable >/dev/null 2>&1 || true
  fi
done

for tool in "${!PACKAGE_OF[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool still missing after installing ${PACKAGE_OF[$tool]}"
  log "$tool: $(command -v "$tool")"
done
