#!/usr/bin/env bash
# Creates the production secrets docker-compose.prod.yml reads, where they are missing:
#   secrets/                          0700: only you can enter it
#   secrets/postgres_password.txt     random, 0644 (read in the containers by uid 999/1000):
#                                     PostgreSQL's superuser, for administration only
#   secrets/postgres_counter_password.txt, postgres_owner_password.txt,
#   secrets/postgres_monitoring_password.txt,
#   secrets/postgres_backup_password.txt
#                                     random, 0644: the roles the apps log in as
#                                     (infra/postgres/roles.sql)
#   secrets/redis_password.txt        random, 0644
#   secrets/redis_exporter_passwords.json  redis_password.txt as redis_exporter reads it
#   secrets/tls_certificate.pem       a self-signed certificate for HOST (default: the
#   secrets/tls_key.pem               machine's name), localhost and 127.0.0.1, 90 days, 0644
# A real certificate replaces the last two (docs/PRODUCTION.md, HTTPS). Existing files are kept.
# It also makes the backup service's directory (BACKUP_DIR, default backups/), 0700,
# owned by uid 999, the user the service writes as.
# Usage: bash infra/init-secrets.sh [HOST]
set -euo pipefail
cd "$(dirname "$0")/.."

host="${1:-$(hostname -f 2>/dev/null || hostname)}"
# Files are created readable by the owner only, then opened to the containers' users
# inside a directory nobody else can enter.
umask 077
mkdir -p secrets
chmod 700 secrets

for name in postgres_password postgres_counter_password postgres_owner_password \
  postgres_monitoring_password postgres_backup_password redis_password; do
  if [ ! -s "secrets/$name.txt" ]; then
    openssl rand -base64 32 > "secrets/$name.txt"
    echo "created secrets/$name.txt"
  fi
done

# redis_exporter takes a password file only as JSON, address to password. Written again
# whenever redis_password.txt is newer, so a changed cache password reaches it too
# (quotes and backslashes escaped).
if [ ! -s secrets/redis_exporter_passwords.json ] ||
  [ secrets/redis_password.txt -nt secrets/redis_exporter_passwords.json ]; then
  password=$(sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' secrets/redis_password.txt)
  printf '{"redis://cache:6379": "%s"}\n' "$password" > secrets/redis_exporter_passwords.json
  echo "created secrets/redis_exporter_passwords.json (from secrets/redis_password.txt)"
fi

if [ ! -s secrets/tls_certificate.pem ] || [ ! -s secrets/tls_key.pem ]; then
  # One command: a key (ECDSA P-256) and a certificate signed with it, for HOST.
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 90 \
    -subj "/CN=$host" -addext "subjectAltName=DNS:$host,DNS:localhost,IP:127.0.0.1" \
    -keyout secrets/tls_key.pem -out secrets/tls_certificate.pem 2>/dev/null
  echo "created a self-signed certificate for $host (secrets/tls_certificate.pem, secrets/tls_key.pem)"
fi

# Readable inside the containers (Compose bind-mounts them as they are).
chmod 644 secrets/*.txt secrets/*.pem secrets/*.json

# Where the backup service writes (docker-compose.prod.yml mounts it; Docker would make a
# missing one root's). Only root may give a directory to another user.
backup_dir="${BACKUP_DIR:-./backups}"
if [ ! -d "$backup_dir" ]; then
  mkdir -p "$backup_dir"
  echo "created $backup_dir (BACKUP_DIR)"
fi
if [ "$(stat -c %u "$backup_dir")" != 999 ]; then
  if [ "$(id -u)" = 0 ]; then
    chown 999:999 "$backup_dir"
    chmod 700 "$backup_dir"
  else
    echo "the backup service writes $backup_dir as uid 999: sudo chown 999:999 '$backup_dir'" >&2
  fi
fi
