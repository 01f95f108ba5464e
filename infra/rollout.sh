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
#   1. build its image; for the counter, then run the migrate job from that image (a
#      fresh one-shot container: `compose run`), and stop there if it fails: nothing new
#      started, the old containers keep serving, the schema as it was (one transaction);
#   2. start as many new containers as it runs now, beside the old ones (Nginx finds
#      them through Docker's DNS within 2 s and spreads requests over old and new);
#   3. wait until every new container is healthy, which for the Node services means it
#      can serve (docker-compose.yml's x-node-service: ready, its port open; until then
#      it refuses Nginx's connections, which Nginx retries on the old ones); if one is
#      not within ROLLOUT_TIMEOUT seconds (default 90, digits only), or says it cannot
#      serve for a reason that waiting will not heal (a refused login, a missing schema),
#      stop and remove the new ones, leave the old ones serving, print the container's
#      name and its last health check (the readiness error), and exit 1: a rollback;
#   4. stop the old containers: each keeps serving for SHUTDOWN_DELAY_MS, then drains its
#      requests in flight and exits; Nginx retries what they refuse on the new ones;
#   5. remove them: the service is back at its replica count, on the new image.
#
# The database and the cache are never rolled: they are single stateful containers
# (update them with `docker compose up -d db cache`, a short outage the counter rides out,
# see docs/COUNTER.md). The frontend publishes the host's ports, which two containers
# cannot share: it is replaced in place, so for about a second new connections are
# refused (clients retry; put a load balancer in front for none).
#
# Any failure stops it with a message naming the step and exit 1; Ctrl-C (SIGINT) or
# SIGTERM stops it with 130 or 143. Either way exactly one set of containers is left in
# Nginx's rotation: the old one if the new one was not healthy yet (the new containers
# are removed), else the new one (the old containers are removed). A failed build
# changes nothing that runs.
set -Eeuo pipefail

log() { printf 'rollout: %s\n' "$*" >&2; }
usage() { log "$1"; log "usage: bash infra/rollout.sh [--no-build] [SERVICE…]"; exit 2; }

# Checked before anything starts. Digits only: bash evaluates a variable used in
# arithmetic as an expression, which may run commands ($(…) in an array index).
timeout="${ROLLOUT_TIMEOUT:-90}"
if ! [[ "$timeout" =~ ^[0-9]{1,5}$ ]] || ((10#$timeout == 0)); then
  usage "ROLLOUT_TIMEOUT must be a number of seconds (1-99999), got '$timeout'"
fi
timeout=$((10#$timeout))
build=(--build)
if [[ "${1:-}" == --no-build ]]; then
  build=(--no-build)
  shift
fi
for arg in "$@"; do
  [[ "$arg" != -* ]] || usage "unknown option '$arg'"
done

# What is under way, for the messages and for settle(): the service, the step, and the
# phase (build, migrate, start, wait, retire, in-place) that decides what an interruption
# leaves.
service="" step="starting" phase="" old=() new=() project=""

# Captured first, then split: a failing command in `< <(…)` would go unnoticed.
lines() { [[ -z "$1" ]] || printf '%s\n' "$1"; }

# The services with a `build:` section, from Compose's own rendering of the files.
built_services() {
  local config
  config=$(docker compose config)
  lines "$config" | awk '
    /^services:/ { in_services = 1; next }
    /^[^ ]/      { in_services = 0 }
    in_services && /^  [A-Za-z0-9._-]+:$/ { service = substr($1, 1, length($1) - 1) }
    in_services && /^    build:/ { print service }'
}

# "healthy", "unhealthy", "starting", or "none" for a container without a health check;
# "exited" (or "dead", …) for one that no longer runs, whatever its last check said.
health() {
  docker inspect --format \
    '{{if ne .State.Status "running"}}{{.State.Status}}{{else if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$1"
}

# The last thing a container's healthcheck printed: for the Node services, the body of
# /readyz that failed (docker-compose.yml's x-node-service), e.g. {"status":"not ready",
# "checks":{"postgres":{"ok":false,"error":"database login refused: …","permanent":true}}}.
# Docker keeps the last five checks; "" before the first one failed.
last_check() {
  docker inspect --format \
    '{{if .State.Health}}{{range .State.Health.Log}}{{if ne .ExitCode 0}}{{.Output}}{{"\n"}}{{end}}{{end}}{{end}}' \
    "$1" | grep -v '^[[:space:]]*$' | tail -n 1 || true
}

# Names the container that cannot serve and why; the caller then fails, which rolls back.
refuse() {
  local name reason
  name=$(docker inspect --format '{{.Name}}' "$1") || name=$1
  reason=$(last_check "$1")
  log "$service: container ${name#/} $2${reason:+; its last health check: $reason}"
}

wait_healthy() {
  local deadline=$((SECONDS + timeout)) id state
  for id in "$@"; do
    while :; do
      state=$(health "$id")
      case "$state" in
        healthy | none) break ;;
        starting) ;;
        unhealthy) refuse "$id" "is unhealthy"; return 1 ;;
        *) refuse "$id" "is $state, not running"; return 1 ;;
      esac
      # A reason its readiness marks as one that waiting will not heal (a refused login,
      # a missing schema): refused at once rather than at the deadline.
      if [[ "$(last_check "$id")" == *'"permanent":true'* ]]; then
        refuse "$id" "cannot serve"
        return 1
      fi
      if ((SECONDS >= deadline)); then
        refuse "$id" "not healthy within ${timeout} s (last: $state)"
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

# The containers of $service that are not the old ones, running or not (also those an
# interrupted `up` left created but not started).
added() {
  local all
  all=$(docker compose ps --all --quiet "$service")
  comm -13 <(lines "${old[*]}" | tr ' ' '\n' | sort) <(lines "$all" | sort)
}

# After a failure or a signal: leaves one complete set in rotation. Before the new
# containers are all healthy that is the old set (the new one goes); after, the new one
# (the old one goes, as it would have). Best effort: it reports what it could not do.
settle() {
  local ids
  case "$phase" in
    start | wait)
      ids=$(added) || ids=""
      mapfile -t new < <(lines "$ids")
      log "$service: rolling back: removing ${#new[@]} new container(s); the old ones keep serving"
      retire "${new[@]}" || log "$service: could not remove every new container: check \`docker compose ps\`"
      ;;
    retire)
      log "$service: the new containers serve; removing the old ones"
      docker stop "${old[@]}" >/dev/null 2>&1 || true
      docker rm --force "${old[@]}" >/dev/null 2>&1 ||
        log "$service: could not remove every old container: check \`docker compose ps\`"
      ;;
    migrate)
      # `compose run` may return on a signal and leave its container running: the job
      # would go on and commit. Killed instead; PostgreSQL then cancels its statement
      # (client_connection_check_interval) and rolls its transaction back.
      ids=$(docker ps --all --quiet --filter "label=com.docker.compose.project=$project" \
        --filter label=com.docker.compose.service=migrate \
        --filter label=com.docker.compose.oneoff=True) || ids=""
      mapfile -t new < <(lines "$ids")
      if ((${#new[@]} > 0)); then
        docker rm --force "${new[@]}" >/dev/null 2>&1 ||
          log "$service: could not remove the migrate job's container: check \`docker ps\`"
      fi
      log "$service: the migrate job did not finish; no new container was started, the old ones keep serving"
      ;;
    in-place)
      # Compose replaces the one container itself; bring it to the configured state.
      log "$service: finishing its replacement"
      docker compose up --detach --no-build --no-deps --wait --wait-timeout "$timeout" \
        "$service" >/dev/null 2>&1 || log "$service: check \`docker compose ps\`"
      ;;
  esac
}

on_error() {
  local status=$?
  # A failure inside $(…) reaches this trap in that subshell too (set -E): only the
  # script itself reports and settles.
  [[ "$BASHPID" == "$$" ]] || exit "$status"
  trap - ERR
  trap '' INT TERM
  log "failed while $step (exit $status)"
  settle
  exit 1
}

on_signal() {
  trap - ERR
  trap '' INT TERM
  log "interrupted (SIG$1) while $step"
  settle
  exit "$2"
}

trap on_error ERR
trap 'on_signal INT 130' INT
trap 'on_signal TERM 143' TERM

roll() {
  local ids count
  service=$1 old=() new=() phase=""
  step="listing the $service containers"
  ids=$(docker compose ps --quiet "$service")
  mapfile -t old < <(lines "$ids")
  count=${#old[@]}
  if [[ "${build[0]}" == --build ]]; then
    phase=build step="building $service"
    log "$service: building"
    docker compose build --quiet "$service"
  fi

  if [[ "$service" == counter ]]; then
    # The schema before any new replica: new code may need a migration. The old replicas
    # keep working on the newer schema (migrations only expand, docs/COUNTER.md). Not
    # `up`: the exited migrate container is not re-created by `up --no-recreate` and is
    # skipped by `--no-deps`; started again it would run the old image's migrations.
    # `run --rm --no-deps` makes a new container from the image just built (db-setup ran
    # with the stack's `up`), shows its log here and returns its exit code.
    phase=migrate step="running the migrate job (apps/counter/migrations) before new counters"
    log "$service: running the migrate job"
    docker compose run --rm --no-deps --no-TTY migrate
    # Committed: a signal from here on is no longer the job's.
    phase=""
  fi

  if [[ "$service" == frontend ]] || ((count == 0)); then
    # Nothing to keep serving beside (not running yet), or ports that cannot be shared.
    phase=in-place step="replacing $service in place"
    log "$service: replacing in place"
    docker compose up --detach --no-build --no-deps --wait --wait-timeout "$timeout" "$service"
    phase=""
    return
  fi

  phase=start step="starting $count new $service container(s)"
  log "$service: starting $count new container(s) beside ${count} old"
  # --no-recreate: the old containers keep their image (to serve beside the new ones, and
  # to roll back to); only the added ones start from the new image.
  docker compose up --detach --no-build --no-deps --no-recreate \
    --scale "$service=$((2 * count))" "$service" >/dev/null
  ids=$(added)
  mapfile -t new < <(lines "$ids")
  if ((${#new[@]} != count)); then
    log "$service: expected $count new container(s), found ${#new[@]}"
    false
  fi
  phase=wait step="waiting for the new $service container(s) to become healthy"
  log "$service: waiting for ${#new[@]} new container(s) to become healthy"
  wait_healthy "${new[@]}"
  phase=retire step="retiring the old $service container(s)"
  log "$service: new container(s) healthy; retiring the old ones"
  retire "${old[@]}"
  phase=""
  log "$service: done"
}

services=("$@")
step="reading the compose files"
# The project's name, which labels its containers (the migrate job's, for settle()).
config=$(docker compose config)
project=$(lines "$config" | sed -n 's/^name: //p')
if ((${#services[@]} == 0)); then
  built=$(built_services)
  mapfile -t services < <(lines "$built" | grep -vx frontend || true)
  # The proxy last: the services behind it are rolled while it keeps serving.
  if grep -qx frontend <<<"$built"; then services+=(frontend); fi
fi
known=$(docker compose config --services)
for name in "${services[@]}"; do
  case "$name" in
    db | cache) usage "$name is not rolled (a single stateful container)" ;;
    migrate) usage "migrate is a job, not rolled: it runs in the counter's rollout" ;;
  esac
  grep -qxF -- "$name" <<<"$known" || usage "no service '$name' in the compose files"
done
for name in "${services[@]}"; do
  roll "$name"
done
log "all done: ${services[*]}"
