#!/usr/bin/env bash
# Installs the system packages the test suite needs when they are missing (Debian/Ubuntu via apt-get):
# - a PostgreSQL server (the execution-target tests start a private cluster from its binaries);
# - Chromium and a font (the report page, the web app and the MLflow UI are checked headless);
# - redis-server (rate limits and web sessions shared by replicas).
set -euo pipefail

missing=()

have_postgres() {
  compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null || command -v pg_ctl >/dev/null
}
have_postgres || missing+=(postgresql)

# Chromium: tests/test_experiment_report.py (T2S_REQUIRE_BROWSER makes a missing browser a failure).
have_chromium() {
  command -v chromium >/dev/null || command -v chromium-browser >/dev/null
}
have_chromium || missing+=(chromium fonts-dejavu-core)

# redis-server: tests/test_serving_ratelimit.py starts a private one (rate limits shared by replicas).
have_redis() {
  command -v redis-server >/dev/null
}
have_redis || missing+=(redis-server)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "missing system packages (${missing[*]}) and apt-get is unavailable: install them by hand." >&2
  echo "PostgreSQL needs pg_ctl and initdb, or set T2S_TEST_POSTGRES_DSN to an existing server." >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "missing system packages (${missing[*]}) and installing them needs root: run 'apt-get install ${missing[*]}' as root." >&2
    exit 1
  fi
fi
echo "installing ${missing[*]} (apt-get)…"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
have_postgres
have_chromium
have_redis
