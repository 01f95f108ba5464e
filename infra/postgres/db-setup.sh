#!/usr/bin/env bash
# The db-setup service (docker-compose.yml): once per `up`, after db is healthy, connects
# as the PostgreSQL superuser and applies roles.sql (the counter, its schema's owner,
# monitoring and backup roles). Each password comes from NAME_FILE (a secret, production)
# or NAME (development), and reaches psql through its environment only: never argv,
# never a log line.
set -euo pipefail

# Exports NAME from the file in NAME_FILE when that is set; refuses an empty value.
read_secret() {
  local name=$1 file_var="${1}_FILE"
  if [[ -n "${!file_var:-}" ]]; then
    [[ -r "${!file_var}" ]] || { echo "db-setup: cannot read $file_var (${!file_var})" >&2; exit 1; }
    printf -v "$name" '%s' "$(<"${!file_var}")"
  fi
  [[ -n "${!name:-}" ]] || { echo "db-setup: $name (or $file_var) is empty" >&2; exit 1; }
  export "${name?}"
}

for name in POSTGRES_PASSWORD POSTGRES_COUNTER_PASSWORD POSTGRES_OWNER_PASSWORD \
  POSTGRES_MONITORING_PASSWORD POSTGRES_BACKUP_PASSWORD; do
  read_secret "$name"
done
# libpq reads the superuser's password from PGPASSWORD; over TCP, as any client would.
export PGPASSWORD="$POSTGRES_PASSWORD" PGHOST="${POSTGRES_HOST:-db}" \
  PGUSER="${POSTGRES_USER:?the superuser\'s name}" PGDATABASE=postgres
if ! psql --no-psqlrc --quiet --file=/usr/local/share/db-setup/roles.sql; then
  echo "db-setup: failed (as superuser $PGUSER on $PGHOST); see docs/TROUBLESHOOTING.md" >&2
  exit 1
fi
echo "db-setup: roles counter, counter_owner, monitoring and backup are up to date"
