#!/usr/bin/env bash
# The backup service's program. docker-compose.prod.yml runs it in a container of the
# database's own image (so pg_dump is of the server's major version), as uid 999, with
# the backup directory of the host at /backups:
#
#   pg-backup.sh loop     a backup now, then one every BACKUP_INTERVAL (the service)
#   pg-backup.sh once     one backup now (infra/backup.sh)
#   pg-backup.sh health   fails when the newest backup is older than two intervals
#
# A backup is `pg_dump --format=custom` into a hidden temporary file, read back with
# pg_restore (its table of contents, then every data block: `--list` alone does not
# notice a file cut short) and only then renamed to its final name. So a file named
# <database>-<UTC time>.dump is complete and readable; only those count, and all but the
# newest BACKUP_KEEP of them are deleted.
#
# Settings (environment): PGHOST, PGDATABASE, PGUSER (libpq's own variables),
# BACKUP_PASSWORD_FILE (the role's password, read into PGPASSWORD for pg_dump alone),
# BACKUP_INTERVAL (seconds, or a number with s, m, h or d; default 1h), BACKUP_KEEP
# (default 24).
set -euo pipefail

dir=/backups
# pg_dump gives up on a database that does not answer, instead of waiting for TCP.
export PGCONNECT_TIMEOUT=${PGCONNECT_TIMEOUT:-10}
log() { printf 'backup: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# BACKUP_INTERVAL in seconds: 90, 90s, 15m, 1h, 1d.
seconds() {
  [[ $1 =~ ^([1-9][0-9]{0,8})([smhd]?)$ ]] || return 1
  local n=${BASH_REMATCH[1]}
  case ${BASH_REMATCH[2]} in
    m) n=$((n * 60)) ;;
    h) n=$((n * 3600)) ;;
    d) n=$((n * 86400)) ;;
  esac
  echo "$n"
}

# Bad settings stop the service at once, with the reason, instead of failing later.
interval=$(seconds "${BACKUP_INTERVAL:-1h}") ||
  die "BACKUP_INTERVAL must be a positive number of seconds, or a number with s, m, h or d (got '${BACKUP_INTERVAL}')"
keep=${BACKUP_KEEP:-24}
[[ $keep =~ ^[1-9][0-9]{0,5}$ ]] || die "BACKUP_KEEP must be a positive whole number (got '$keep')"
: "${PGDATABASE:?the database to back up}"
[[ $PGDATABASE =~ ^[A-Za-z0-9_.-]+$ ]] || die "PGDATABASE '$PGDATABASE' is not usable in a file name"

# The good backups, oldest first (the UTC time in the name sorts like the time itself).
backups() {
  local file
  for file in "$dir/$PGDATABASE"-[0-9]*T[0-9]*Z.dump; do
    [[ -f $file ]] && printf '%s\n' "$file"
  done
}

once() {
  [[ -w $dir ]] || die "$dir (BACKUP_DIR on the host) is not writable by uid $(id -u): chown $(id -u):$(id -g) it"
  local password_file=${BACKUP_PASSWORD_FILE:?the role password file}
  [[ -s $password_file ]] || die "$password_file is missing or empty"
  local name started toc entries
  # Global: the EXIT trap removes it when anything below fails.
  name="$PGDATABASE-$(date -u +%Y%m%dT%H%M%SZ).dump"
  tmp="$dir/.$name.$$.partial"
  started=$EPOCHREALTIME
  # Backups hold the whole database: readable by this user only.
  umask 077
  trap 'rm -f -- "$tmp"' EXIT
  # The password reaches pg_dump in its environment only: not in argv, not in the
  # container's configuration.
  PGPASSWORD=$(<"$password_file") pg_dump --format=custom --file="$tmp"
  toc=$(pg_restore --list "$tmp") || die "pg_restore --list cannot read the new dump"
  # (None in a database nobody has used yet: still a backup of it.)
  entries=$(grep -c '^[0-9]' <<<"$toc" || true)
  pg_restore --file=/dev/null "$tmp" || die "the new dump's data cannot be read back"
  # On disk before it is renamed, and the rename on disk before it counts.
  sync -- "$tmp"
  mv -- "$tmp" "$dir/$name"
  sync -- "$dir"
  trap - EXIT
  log "$name: $(stat -c %s "$dir/$name") bytes, $entries entries, $(elapsed "$started") s"

  local all
  mapfile -t all < <(backups)
  if ((${#all[@]} > keep)); then
    for old in "${all[@]:0:${#all[@]}-keep}"; do
      rm -f -- "$old"
      log "deleted ${old#"$dir"/} (BACKUP_KEEP=$keep)"
    done
  fi
}

elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }'; }

loop() {
  log "every ${interval} s, keeping the newest $keep, as $PGUSER@$PGHOST/$PGDATABASE"
  # Left by a backup cut short (the container stopped during pg_dump).
  rm -f -- "$dir"/.*.partial
  local wait
  while :; do
    # A child process: `set -e` holds inside it, and its failure ends only this attempt.
    if bash "$0" once; then
      wait=$interval
    else
      # Retried sooner than the next interval: a database back after a minute's outage
      # is backed up then, not an interval later.
      wait=$((interval < 60 ? interval : 60))
      log "failed; next attempt in $wait s"
    fi
    sleep "$wait"
  done
}

# Healthy while the newest good backup is younger than two intervals: one missed
# backup is tolerated, two are not.
health() {
  local all newest age
  mapfile -t all < <(backups)
  ((${#all[@]} > 0)) || { echo "no backup in $dir yet"; return 1; }
  newest=${all[-1]}
  age=$(($(date +%s) - $(stat -c %Y "$newest")))
  echo "newest: ${newest#"$dir"/}, $age s old (limit $((2 * interval)) s)"
  ((age <= 2 * interval))
}

case "${1:-}" in
  loop) loop ;;
  once) once ;;
  health) health ;;
  *) die "usage: pg-backup.sh loop|once|health" ;;
esac
