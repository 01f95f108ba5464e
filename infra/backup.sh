#!/usr/bin/env bash
# Backs the database up now, besides the backup service's schedule: one run of its
# program (infra/backup/pg-backup.sh) in a one-off container of the service, with the
# same image, role, secret and directory. It prints the new file's name, in BACKUP_DIR.
#
#   bash infra/backup.sh
#
# It runs `docker compose` exactly as you would, so it acts on the same project: set the
# production files the way you run them (COMPOSE_FILE in .env, or exported), e.g.
#   COMPOSE_FILE=docker-compose.yml:docker-compose.prod.yml bash infra/backup.sh
set -euo pipefail

if (($# > 0)); then
  echo "usage: bash infra/backup.sh (no arguments; see the comment at its top)" >&2
  exit 2
fi
# --no-deps: backing up never starts or changes another service; the database must be up.
exec docker compose run --rm --no-deps -T backup once
