#!/usr/bin/env bash
# Deploys the production stack to Docker Swarm:
#   bash infra/swarm/deploy.sh [STACK_NAME]        (default: visit-counter)
# Build (and push, on a multi-node swarm) the images first:
#   docker compose -f docker-compose.yml -f docker-compose.prod.yml build
# Compose renders base + production into one file; to-stack.mjs adapts it to the
# Swarm loader (see there); `docker stack deploy` waits until every service runs.
set -euo pipefail
stack=${1:-visit-counter}
cd "$(dirname "$0")/../.."

docker compose -f docker-compose.yml -f docker-compose.prod.yml config --format json \
  | node infra/swarm/to-stack.mjs \
  | docker stack deploy --detach=false --compose-file - "$stack"
