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
#   secrets/tls_certificate.pem       a self-signed certificate for HOST, localhost and
#   secrets/tls_key.pem               127.0.0.1, 90 days, 0644
# A real certificate replaces the last two (docs/PRODUCTION.md, HTTPS). Existing files are kept.
# It writes PUBLIC_HOST=HOST into .env (that one line, added or replaced), where Compose
# reads it: the production frontend refuses to start without a PUBLIC_HOST.
# It also makes the backup service's directory (BACKUP_DIR, read as Compose reads it: the
# shell's, else .env's, else backups/), 0700, owned by uid 999, the user it writes as.
# Without HOST: the PUBLIC_HOST Compose would use, else the machine's name.
# Usage: bash infra/init-secrets.sh [HOST]
set -euo pipefail
cd "$(dirname "$0")/.."

# The variables Compose interpolates the production files with: the shell's first, then
# .env, exactly as `up` will read them (Compose parses .env itself, quotes and all).
compose_env=$(docker compose -f docker-compose.yml -f docker-compose.prod.yml config --environment) || {
  echo "init-secrets.sh: 'docker compose config' failed (above): it reads PUBLIC_HOST and BACKUP_DIR as \`up\` does" >&2
  exit 1
}
# compose_value NAME: its value for Compose, empty when unset.
compose_value() { sed -n "s/^$1=//p" <<<"$compose_env" | tail -n 1; }

host="${1:-$(compose_value PUBLIC_HOST)}"
host="${host:-$(hostname -f 2>/dev/null || hostname)}"
# Lower case, as nginx compares host names; refused before anything is written if it is
# not one (the frontend's entrypoint applies the same rule to PUBLIC_HOST).
host=$(tr '[:upper:]' '[:lower:]' <<<"$host")
label='[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?'
if ! grep -Eqx "($label\.)*$label" <<<"$host" || [ ${#host} -gt 253 ]; then
  echo "init-secrets.sh: HOST must be a host name such as example.com (letters, digits, '-' and '.'), got '$host'" >&2
  exit 1
fi
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
elif openssl x509 -noout -in secrets/tls_certificate.pem -checkhost "$host" | grep -q 'does NOT match'; then
  # A kept certificate for another name: browsers would refuse the new one.
  echo "secrets/tls_certificate.pem is not valid for $host: put in one that is, or delete secrets/tls_*.pem and run this again for a self-signed one" >&2
fi

# Readable inside the containers (Compose bind-mounts them as they are).
chmod 644 secrets/*.txt secrets/*.pem secrets/*.json

# Where the backup service writes (docker-compose.prod.yml mounts it; Docker would make a
# missing one root's). Only root may give a directory to another user.
backup_dir=$(compose_value BACKUP_DIR)
backup_dir="${backup_dir:-./backups}"
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

# PUBLIC_HOST where Compose reads it: the one line replaced (every other line of .env as
# it was), or appended. A new .env is the owner's alone (umask above), like secrets/.
touch .env
if grep -Eq '^[[:space:]]*(export[[:space:]]+)?PUBLIC_HOST[[:space:]]*=' .env; then
  sed -i -E "s/^[[:space:]]*(export[[:space:]]+)?PUBLIC_HOST[[:space:]]*=.*/PUBLIC_HOST=$host/" .env
else
  # On a line of its own, also when the last line has no newline.
  if [ -s .env ] && [ -n "$(tail -c 1 .env)" ]; then echo >> .env; fi
  echo "PUBLIC_HOST=$host" >> .env
fi
echo "PUBLIC_HOST=$host in .env"
# The shell's variable wins over .env in Compose: say so when it names another host.
if [ -n "${PUBLIC_HOST:-}" ] && [ "$PUBLIC_HOST" != "$host" ]; then
  echo "your shell's PUBLIC_HOST=$PUBLIC_HOST overrides .env for Compose: unset it" >&2
fi
