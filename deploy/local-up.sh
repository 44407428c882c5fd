#!/usr/bin/env bash
# privops local up for shell scripts: Kafka (KRaft) + schema registry on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/privops local up "$@"
