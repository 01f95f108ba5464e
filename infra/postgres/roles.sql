-- The stack's login roles, run by db-setup.sh as the superuser on every `up`: creates
-- what is missing and (re)sets every attribute, grant and password, so it brings a volume
-- of any age to the same state. Passwords arrive as psql variables (:'…' quotes them as
-- SQL literals) read from the environment with \getenv, never on a command line.
\set ON_ERROR_STOP on
\getenv counter_password POSTGRES_COUNTER_PASSWORD
\getenv monitoring_password POSTGRES_MONITORING_PASSWORD
\getenv backup_password POSTGRES_BACKUP_PASSWORD
\getenv app_database POSTGRES_DB

-- A volume from before the roles were split has `counter` as its superuser: it cannot be
-- demoted (the bootstrap superuser must stay one), so stop with the way out.
SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = 'counter' AND rolsuper)
  AS counter_is_superuser \gset
\if :counter_is_superuser
DO $$ BEGIN RAISE EXCEPTION 'the role counter is a superuser (a volume created before the roles were split): see docs/TROUBLESHOOTING.md'; END $$;
\endif
-- Re-granting what a role has is not news.
SET client_min_messages = warning;

-- CREATE ROLE has no IF NOT EXISTS: generate it only for the missing ones.
SELECT format('CREATE ROLE %I', name)
  FROM unnest(ARRAY['counter', 'monitoring', 'backup']) AS name
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = name) \gexec

-- None may administer anything: no superuser, no roles or databases of its own, no
-- replication, no bypassing row security. A connection cap each, below max_connections
-- (100): the counter's pools (10 a replica) cannot starve the administrator.
ALTER ROLE counter LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB NOREPLICATION NOBYPASSRLS
  CONNECTION LIMIT 60 PASSWORD :'counter_password';
ALTER ROLE monitoring LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB NOREPLICATION NOBYPASSRLS
  CONNECTION LIMIT 5 PASSWORD :'monitoring_password';
ALTER ROLE backup LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB NOREPLICATION NOBYPASSRLS
  CONNECTION LIMIT 5 PASSWORD :'backup_password';

-- postgres_exporter: the statistics views, nothing else (pg_monitor is read-only).
GRANT pg_monitor TO monitoring;
-- pg_dump: reads every table, writes none.
GRANT pg_read_all_data TO backup;

-- The counter creates its own tables and function at start (apps/counter/src/schema.ts)
-- and owns them. Since PostgreSQL 15 nobody but the database owner may create in the
-- public schema: the counter may, in the app database only.
GRANT CONNECT, TEMPORARY ON DATABASE :"app_database" TO counter;
\connect :"app_database"
GRANT USAGE, CREATE ON SCHEMA public TO counter;
