#!/usr/bin/env bash
# Restores the counter's database from a backup (a file of infra/backup.sh or the backup
# service), replacing what it holds now:
#
#   bash infra/restore.sh FILE
#
# It runs `docker compose` exactly as you would, so it acts on the same project: set the
# production files the way you run them (COMPOSE_FILE in .env, or exported), e.g.
#   COMPOSE_FILE=docker-compose.yml:docker-compose.prod.yml bash infra/restore.sh FILE
#
# 1. Checks FILE with pg_restore inside the database's container: its table of contents
#    (`--list`) and every data block (a file cut short has a readable table of contents),
#    and that it was dumped from a server of the running server's major version. A file
#    that fails is refused, and nothing has been touched.
# 2. Stops the counter replicas: no visit is counted, and no count cached, during the
#    restore (Nginx answers /api/visits with a JSON error meanwhile).
# 3. Runs db-setup (the roles the backup's objects belong to), then restores as the
#    superuser in one transaction (--single-transaction --clean
#    --if-exists): the database holds either the backup or, if anything fails, what it
#    held before (then the counters are started again, and it exits 1).
#    Then db-setup and the migrate job run, as on every `up`: a backup made before the
#    schema had an owner role and versioned migrations (tables owned by counter, no
#    pgmigrations) gets counter_owner as owner, the counter's grants and the migration
#    history; a newer one is left as it is, or migrated forward from its own history.
# 4. Deletes the cached count (cached-count:<COUNTER_ID>; and count:<COUNTER_ID>, an earlier
#    version's, and any key below either) from Redis, so no read shows a count the
#    restored database never had.
# 5. Starts the counters and waits until each is healthy and reads the count from the
#    restored database, then until Nginx serves it (RESTORE_TIMEOUT seconds each,
#    default 90).
# What a restore means for the visit numbers: docs/COUNTER.md.
set -euo pipefail

timeout="${RESTORE_TIMEOUT:-90}"
log() { printf 'restore: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

if (($# != 1)) || [[ $1 == -* ]]; then
  echo "usage: bash infra/restore.sh FILE" >&2
  exit 2
fi
file=$1
[[ -f $file && -r $file ]] || die "$file: no such readable file"
[[ -s $file ]] || die "$file is empty: not a backup"
[[ $timeout =~ ^[1-9][0-9]{0,4}$ ]] || die "RESTORE_TIMEOUT must be a whole number of seconds (got '$timeout')"

since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
started=$EPOCHREALTIME

# A command in the database container, FILE on its stdin. The superuser's name and
# password are the container's own (POSTGRES_USER, the secret file POSTGRES_PASSWORD_FILE
# names), read there: they never pass through this script or a command line. Over TCP
# with the password, whatever pg_hba.conf allows on the socket.
in_db() {
  docker compose exec -T db bash -c '
    if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then PGPASSWORD=$(cat "$POSTGRES_PASSWORD_FILE"); else PGPASSWORD=${POSTGRES_PASSWORD:-}; fi
    export PGPASSWORD
    export PGHOST=127.0.0.1 PGUSER="${POSTGRES_USER:-postgres}" PGDATABASE="${POSTGRES_DB:-${POSTGRES_USER:-postgres}}"
    '"$1"
}

# --- 1. Check the file; nothing is changed before it passes. ---
[[ -n $(docker compose ps --quiet --status running db) ]] ||
  die "the database is not running: start it first (docker compose up -d db)"
if ! toc=$(in_db 'pg_restore --list' <"$file" 2>&1); then
  die "$file is not a backup pg_restore can read: ${toc##*$'\n'} (nothing was changed)"
fi
if ! problem=$(in_db 'pg_restore --file=/dev/null' <"$file" 2>&1); then
  die "$file is incomplete or damaged (its data cannot be read: ${problem##*$'\n'}); nothing was changed"
fi
dumped=$(sed -n 's/^;[[:space:]]*Dumped from database version: //p' <<<"$toc")
[[ -n $dumped ]] || die "$file names no server version: not a pg_dump backup (nothing was changed)"
server=$(in_db 'psql --no-psqlrc --tuples-only --no-align --command="SHOW server_version"')
if [[ ${dumped%%.*} != "${server%%.*}" ]]; then
  die "$file was dumped from PostgreSQL ${dumped%% *}, the server runs ${server%% *}: another major version; restore it into a PostgreSQL ${dumped%%.*} server instead (nothing was changed)"
fi
log "checked $file: $(grep -c '^[0-9]' <<<"$toc") entries, dumped from PostgreSQL ${dumped%% *} ($(grep -m1 'Archive created at' <<<"$toc" | sed 's/^;[[:space:]]*//')), in $(since "$started") s"

# --- 2. Take the counters out of service. ---
mapfile -t counters < <(docker compose ps --quiet counter)
# The cache key is cached-count:<COUNTER_ID>: the counters' own setting, default "visits".
counter_id=visits
if ((${#counters[@]} > 0)); then
  setting=$(docker inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "${counters[0]}" |
    sed -n 's/^COUNTER_ID=//p')
  counter_id=${setting:-visits}
fi
[[ $counter_id =~ ^[A-Za-z0-9_:.-]+$ ]] || die "unexpected COUNTER_ID '$counter_id'"

# The count a counter reads, as "<status> <X-Cache> <body>", from inside its container
# (JavaScript: the single quotes keep its template literal from the shell).
# shellcheck disable=SC2016
READ_COUNT='require("node:http").get(`http://127.0.0.1:${process.env.PORT}/visits`, (r) => {
  let body = ""; r.on("data", (c) => (body += c));
  r.on("end", () => { console.log(r.statusCode, r.headers["x-cache"], body); process.exit(r.statusCode === 200 ? 0 : 1); });
}).on("error", (e) => { console.log(String(e)); process.exit(1); })'

# The count as Nginx serves it, read inside the frontend container (127.0.0.1 is a host
# it serves): HTTPS on 8443 when TLS is on (-k: its own certificate, over its own
# loopback), else HTTP on 8080. curl is in the nginx image (its health check uses it).
# shellcheck disable=SC2016
EDGE_READ='if [ "$TLS" = on ]; then curl -fsS -k --max-time 5 https://127.0.0.1:8443/api/visits
else curl -fsS --max-time 5 http://127.0.0.1:8080/api/visits; fi'

start_counters() {
  ((${#counters[@]} > 0)) || return 0
  local step=$EPOCHREALTIME id state answer deadline=$((SECONDS + timeout))
  docker start "${counters[@]}" >/dev/null
  for id in "${counters[@]}"; do
    while state=$(docker inspect --format '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$id") &&
      [[ $state != healthy && $state != none ]]; do
      ((SECONDS < deadline)) || die "counter ${id:0:12} not healthy within $timeout s (last: $state)"
      sleep 0.5
    done
    # Healthy is "listening"; serving is reading the restored tables as the counter's
    # role, over its own connections: each replica reads the count once before it counts.
    until answer=$(docker exec "$id" node -e "$READ_COUNT" 2>&1); do
      ((SECONDS < deadline)) || die "counter ${id:0:12} cannot read the count within $timeout s (last: $answer)"
      sleep 0.5
    done
  done
  log "started ${#counters[@]} counter replica(s): healthy and reading in $(since "$step") s (the last read: $answer)"
  # Back in service is when Nginx serves the count, not when the replicas do: Nginx finds
  # them by name again only once its resolver's last answer (no replica, or their old
  # addresses) expires, and answers /api/visits 502 until then.
  if [[ -z $(docker compose ps --quiet --status running frontend) ]]; then
    log "the frontend is not running: not checked through Nginx"
    return 0
  fi
  # Its own budget: the replicas may have used most of theirs.
  deadline=$((SECONDS + timeout))
  # A 200 with the count in its body (curl -f would also pass a redirect); 2>&1 keeps
  # curl's error for the message, and any warning of Compose's.
  until answer=$(docker compose exec -T frontend sh -c "$EDGE_READ" 2>&1) &&
    [[ $answer =~ \{\"count\":[0-9]+\} ]]; do
    ((SECONDS < deadline)) || die "the counters run, but Nginx does not serve /api/visits within $timeout s (last: $answer); see docker compose logs frontend"
    sleep 0.5
  done
  log "Nginx serves the count again, $(since "$step") s after the start: ${BASH_REMATCH[0]}"
}

stopped=$EPOCHREALTIME
if ((${#counters[@]} > 0)); then
  # From here on, any failure before the restore committed starts them again.
  trap 'log "failed: the database is as it was; starting the counters again"; start_counters' EXIT
  docker stop "${counters[@]}" >/dev/null
  log "stopped ${#counters[@]} counter replica(s) in $(since "$stopped") s"
fi

# --- 3. Restore, in one transaction. ---
step=$EPOCHREALTIME
# The roles the backup's objects belong to must exist first: on a new volume (a lost disk,
# the database started alone) nothing has made them yet. db-setup changes no table.
if ! output=$(docker compose run --rm --no-deps --no-TTY db-setup 2>&1); then
  die "db-setup failed, so nothing was restored: ${output##*$'\n'}"
fi
# $PGDATABASE is the container's (single quotes: expanded there).
# shellcheck disable=SC2016
if ! output=$(in_db 'pg_restore --single-transaction --clean --if-exists --dbname="$PGDATABASE"' <"$file" 2>&1); then
  die "pg_restore failed, the transaction was rolled back: $output"
fi
trap - EXIT
log "restored $file into the database in $(since "$step") s (one transaction)"
# A backup without the migrations' table leaves today's in place (--clean drops only what
# the file holds), recording migrations its schema never had. Dropped once the restore
# has committed (before, a failed restore would leave today's schema without its record,
# which no counter accepts): the migrate job below then applies them all, and the
# baseline accepts the restored tables.
if ! grep -Eq ' TABLE public pgmigrations ' <<<"$toc"; then
  if ! in_db 'psql --no-psqlrc --quiet --command="DROP TABLE IF EXISTS pgmigrations"' >/dev/null; then
    die "restored, but the migrations' record of the schema it replaced could not be dropped, so the counters stay stopped: drop the table pgmigrations, then run this again"
  fi
  log "$file predates versioned migrations: the migrate job will record them"
fi
# The roles and grants (REASSIGN OWNED: the dump's owner may be counter), then the schema
# up to this build's migrations. --no-deps: db is running, the counters stay stopped.
step=$EPOCHREALTIME
for job in db-setup migrate; do
  if ! output=$(docker compose run --rm --no-deps --no-TTY "$job" 2>&1); then
    die "restored, but the $job job failed, so the counters stay stopped: ${output##*$'\n'}; fix it, then: docker compose up -d counter"
  fi
done
log "db-setup and the migrate job ran in $(since "$step") s: ${output##*$'\n'}"

# --- 4. Empty the cached count. ---
step=$EPOCHREALTIME
if [[ -n $(docker compose ps --quiet --status running cache) ]]; then
  # REDISCLI_AUTH from the secret where there is one (production); SCAN, never KEYS,
  # for the keys below them.
  if ! deleted=$(docker compose exec -T cache sh -c '
      if [ -r /run/secrets/redis_password ]; then REDISCLI_AUTH=$(cat /run/secrets/redis_password); export REDISCLI_AUTH; fi
      set -e
      below=$(redis-cli --scan --pattern "cached-count:$1:*"; redis-cli --scan --pattern "count:$1:*")
      for key in "cached-count:$1" "count:$1" $below; do
        n=$(redis-cli del "$key")
        case $n in
          0) ;;
          1) echo "$key" ;;
          *) echo "DEL $key: $n" >&2; exit 1 ;;
        esac
      done' sh "$counter_id" 2>&1); then
    die "could not delete cached-count:$counter_id from the cache ($deleted): the counters stay stopped, so that no read shows the old count. Delete it (or restart the cache: it keeps nothing), then: docker compose up -d counter"
  fi
  deleted=${deleted//$'\n'/ }
  log "emptied the cached count (deleted: ${deleted:-nothing, no key was cached}) in $(since "$step") s"
else
  log "the cache is not running: nothing to empty (it starts empty)"
fi

# --- 5. Back in service. ---
start_counters
log "done in $(since "$started") s; the counters were out of service for $(since "$stopped") s"
