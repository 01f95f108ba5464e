#!/usr/bin/env bash
# A rolling update for the Compose stack: replaces the containers of each service with
# ones built from the current code, without a moment in which the service has none.
#
#   bash infra/rollout.sh [--no-build] [SERVICE…]
#     SERVICE: default every service built from this repository.
#     --no-build: use the images as they are (pulled from a registry, or a previous
#     IMAGE_TAG still on this machine: a rollback) instead of building the current code.
#
# It runs `docker compose` exactly as you would, so it acts on the same project: set the
# production files the way you run them (COMPOSE_FILE in .env, or exported), e.g.
#   COMPOSE_FILE=docker-compose.yml:docker-compose.prod.yml bash infra/rollout.sh
#
# For each service, one at a time:
#   1. build its image;
#   2. start as many new containers as it runs now, beside the old ones (Nginx finds
#      them through Docker's DNS within 2 s and spreads requests over old and new);
#   3. wait until every new container is healthy; if one is not within ROLLOUT_TIMEOUT
#      seconds (default 90), stop and remove the new ones, leave the old ones serving,
#      and exit 1: a rollback;
#   4. stop the old containers: each keeps serving for SHUTDOWN_DELAY_MS, then drains its
#      requests in flight and exits; Nginx retries what they refuse on the new ones;
#   5. remove them: the service is back at its replica count, on the new image.
#
# The database and the cache are never rolled: they are single stateful containers
# (update them with `docker compose up -d db cache`, a short outage the counter rides out,
# see docs/COUNTER.md). The frontend publishes the host's ports, which two containers
# cannot share: it is replaced in place, so for about a second new connections are
# refused (clients retry; put a load balancer in front for none).
set -euo pipefail

timeout="${ROLLOUT_TIMEOUT:-90}"
build=(--build)
if [[ "${1:-}" == --no-build ]]; then
  build=(--no-build)
  shift
fi

log() { printf 'rollout: %s\n' "$*" >&2; }

# The services with a `build:` section, from Compose's own rendering of the files.
built_services() {
  docker compose config | awk '
    /^services:/ { in_services = 1; next }
    /^[^ ]/      { in_services = 0 }
    in_services && /^  [A-Za-z0-9._-]+:$/ { service = substr($1, 1, length($1) - 1) }
    in_services && /^    build:/ { print service }'
}

# "healthy", "unhealthy", "starting", or "none" for a container without a health check.
health() {
  docker inspect --format '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$1"
}

wait_healthy() {
  local deadline=$((SECONDS + timeout)) id state
  for id in "$@"; do
    while :; do
      state=$(health "$id")
      case "$state" in
        healthy | none) break ;;
        unhealthy) log "container ${id:0:12} is unhealthy"; return 1 ;;
      esac
      if ((SECONDS >= deadline)); then
        log "container ${id:0:12} not healthy within ${timeout} s (last: $state)"
        return 1
      fi
      sleep 1
    done
  done
}

# Stops containers (SIGTERM, then each service's own graceful shutdown) and removes them.
retire() {
  (($# > 0)) || return 0
  docker stop "$@" >/dev/null
  docker rm "$@" >/dev/null
}

roll() {
  local service=$1 old new count
  mapfile -t old < <(docker compose ps --quiet "$service")
  count=${#old[@]}
  if [[ "${build[0]}" == --build ]]; then
    log "$service: building"
    docker compose build --quiet "$service"
  fi

  if [[ "$service" == frontend ]] || ((count == 0)); then
    # Nothing to keep serving beside (not running yet), or ports that cannot be shared.
    log "$service: replacing in place"
    docker compose up --detach --no-build --no-deps --wait --wait-timeout "$timeout" "$service"
    return
  fi

  log "$service: starting $count new container(s) beside ${count} old"
  # --no-recreate: the old containers keep their image (to serve beside the new ones, and
  # to roll back to); only the added ones start from the new image.
  docker compose up --detach --no-build --no-deps --no-recreate \
    --scale "$service=$((2 * count))" "$service" >/dev/null
  mapfile -t new < <(comm -13 <(printf '%s\n' "${old[@]}" | sort) \
    <(docker compose ps --quiet "$service" | sort))
  if ((${#new[@]} != count)); then
    log "$service: expected $count new container(s), found ${#new[@]}; rolling back"
    retire "${new[@]}"
    return 1
  fi
  if ! wait_healthy "${new[@]}"; then
    log "$service: rolling back: the old container(s) keep serving"
    retire "${new[@]}"
    return 1
  fi
  log "$service: new container(s) healthy; retiring the old ones"
  retire "${old[@]}"
  log "$service: done"
}

services=("$@")
if ((${#services[@]} == 0)); then
  mapfile -t services < <(built_services)
  # The proxy last: the services behind it are rolled while it keeps serving.
  mapfile -t services < <(printf '%s\n' "${services[@]}" | grep -vx frontend
    printf '%s\n' "${services[@]}" | grep -x frontend || true)
fi
for service in "${services[@]}"; do
  case "$service" in
    db | cache) log "$service is not rolled (a single stateful container)"; exit 2 ;;
  esac
  roll "$service" || { log "$service: failed"; exit 1; }
done
log "all done: ${services[*]}"
