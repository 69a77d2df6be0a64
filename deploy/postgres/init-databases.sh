#!/bin/sh
# First start of the PostgreSQL container only (docker-entrypoint-initdb.d): one database and one
# login role per service (web: the web front end's sign-in sessions). Each service owns its data: a role can connect to its own database only.
set -eu
for svc in intake aggregator notifier analysis web; do
  var=$(echo "EST_PG_${svc}_PASSWORD" | tr '[:lower:]' '[:upper:]')
  eval "pw=\${$var:?set $var}"
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
       -v role="$svc" -v pw="$pw" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'pw';
CREATE DATABASE :"role" OWNER :"role";
REVOKE ALL ON DATABASE :"role" FROM PUBLIC;
SQL
done
