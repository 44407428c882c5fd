#!/usr/bin/env bash
# privops local status for shell scripts: Kafka (KRaft) + schema registry on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/privops local status "$@"
