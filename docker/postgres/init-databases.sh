#!/bin/sh
# Run by the postgres image once, when its data volume is first initialised (/docker-entrypoint-initdb.d):
# one login role and one database for each server of the team stack, each database owned by its role and
# closed to everyone else. Passwords come from docker/team.env; psql quotes them (:'name'), so any
# character is safe. Re-running needs an empty volume: `docker compose down -v` drops ALL data.
set -eu

: "${MLFLOW_DB_PASSWORD:?set MLFLOW_DB_PASSWORD in docker/team.env}"
: "${PREFECT_SERVER_DATABASE_PASSWORD:?set PREFECT_SERVER_DATABASE_PASSWORD in docker/team.env}"

psql --set=ON_ERROR_STOP=1 --username="${POSTGRES_USER:-postgres}" --dbname="${POSTGRES_DB:-postgres}" \
    --set=mlflow_password="${MLFLOW_DB_PASSWORD}" \
    --set=prefect_password="${PREFECT_SERVER_DATABASE_PASSWORD}" <<'SQL'
CREATE ROLE mlflow LOGIN PASSWORD :'mlflow_password';
CREATE DATABASE mlflow OWNER mlflow;
REVOKE ALL ON DATABASE mlflow FROM PUBLIC;

CREATE ROLE prefect LOGIN PASSWORD :'prefect_password';
CREATE DATABASE prefect OWNER prefect;
REVOKE ALL ON DATABASE prefect FROM PUBLIC;
SQL
