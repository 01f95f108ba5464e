-- The stack's login roles, run by db-setup.sh as the superuser on every `up`: creates
-- what is missing and (re)sets every attribute, grant and password, so it brings a volume
-- of any age to the same state. Passwords arrive as psql variables (:'…' quotes them as
-- SQL literals) read from the environment with \getenv, never on a command line.
\set ON_ERROR_STOP on
\getenv counter_password POSTGRES_COUNTER_PASSWORD
\getenv owner_password POSTGRES_OWNER_PASSWORD
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
  FROM unnest(ARRAY['counter', 'counter_owner', 'monitoring', 'backup']) AS name
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = name) \gexec

-- None may administer anything: no superuser, no roles or databases of its own, no
-- replication, no bypassing row security. A connection cap each, below max_connections
-- (100): the counter's pools (10 a replica) cannot starve the administrator.
ALTER ROLE counter LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB NOREPLICATION NOBYPASSRLS
  CONNECTION LIMIT 60 PASSWORD :'counter_password';
-- The owner of the counter's schema: only the migrate job logs in as it (its password is
-- a secret no long-running service mounts, docker-compose.prod.yml).
ALTER ROLE counter_owner LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB NOREPLICATION NOBYPASSRLS
  CONNECTION LIMIT 3 PASSWORD :'owner_password';
ALTER ROLE monitoring LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB NOREPLICATION NOBYPASSRLS
  CONNECTION LIMIT 5 PASSWORD :'monitoring_password';
ALTER ROLE backup LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB NOREPLICATION NOBYPASSRLS
  CONNECTION LIMIT 5 PASSWORD :'backup_password';

-- postgres_exporter: the statistics views, nothing else (pg_monitor is read-only).
GRANT pg_monitor TO monitoring;
-- pg_dump: reads every table, writes none.
GRANT pg_read_all_data TO backup;

-- Two roles for one schema. counter_owner owns the tables and the function and runs the
-- migrations (apps/counter/migrations, the migrate job); counter, which serves the
-- internet, may only use them: no ownership, no CREATE, so it can neither DROP, ALTER nor
-- TRUNCATE them, nor make new ones. Since PostgreSQL 15 nobody but the database owner
-- may create in the public schema: the owner may, in the app database only.
GRANT CONNECT ON DATABASE :"app_database" TO counter, counter_owner;
-- No temporary tables either (PUBLIC may make them by default; older versions of this
-- file granted it to counter): the counter's queries need none.
REVOKE TEMPORARY ON DATABASE :"app_database" FROM PUBLIC, counter;
\connect :"app_database"
GRANT USAGE, CREATE ON SCHEMA public TO counter_owner;
GRANT USAGE ON SCHEMA public TO counter;
-- Granted by older versions of this file, when the counter migrated at start.
REVOKE CREATE ON SCHEMA public FROM counter;
-- A volume made before the split: the counter created, so owns, the tables and the
-- function. (Per database: objects elsewhere are not touched.) Nothing to do afterwards.
REASSIGN OWNED BY counter TO counter_owner;

-- What a visit needs, on what exists now (an old volume's tables, reassigned above)...
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO counter;
-- ...and on what the migrations create later (the default for objects counter_owner creates).
ALTER DEFAULT PRIVILEGES FOR ROLE counter_owner IN SCHEMA public
  GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO counter;
-- A serial or identity column's sequence: an INSERT needs USAGE on it.
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO counter;
ALTER DEFAULT PRIVILEGES FOR ROLE counter_owner IN SCHEMA public
  GRANT USAGE ON SEQUENCES TO counter;
-- Functions are executable by PUBLIC unless revoked: count_visits by the counter only.
ALTER DEFAULT PRIVILEGES FOR ROLE counter_owner REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
ALTER DEFAULT PRIVILEGES FOR ROLE counter_owner IN SCHEMA public
  GRANT EXECUTE ON FUNCTIONS TO counter;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA public FROM PUBLIC;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO counter;
-- The migrations' own record: the counter reads it (is the schema recent enough?) and
-- never writes it. (The baseline migration revokes the same on a new database.)
SELECT 'REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON pgmigrations FROM counter'
 WHERE to_regclass('pgmigrations') IS NOT NULL \gexec
