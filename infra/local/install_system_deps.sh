#!/usr/bin/env bash
# Installs the system packages the test suite needs when they are missing: a PostgreSQL server
# (the execution-target tests start a private cluster from its binaries). Debian/Ubuntu via apt-get.
set -euo pipefail

have_postgres() {
  compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null || command -v pg_ctl >/dev/null
}

if have_postgres; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "PostgreSQL server binaries not found and apt-get is unavailable: install PostgreSQL (pg_ctl, initdb)" >&2
  echo "or set T2S_TEST_POSTGRES_DSN to an existing server." >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "PostgreSQL is missing and installing it needs root: run 'apt-get install postgresql' as root." >&2
    exit 1
  fi
fi
echo "installing PostgreSQL server (apt-get)…"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null
have_postgres
