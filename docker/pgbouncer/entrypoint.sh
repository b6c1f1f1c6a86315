#!/bin/sh
# Write pgbouncer's auth file from the environment (the same password PostgREST logs in with), then run it.
# The file is written in the running container (/run/pgbouncer, mode 600, the pgbouncer user only); nothing secret
# is in the image or the repository.
set -eu
: "${PGRST_AUTHENTICATOR_PASSWORD:?set PGRST_AUTHENTICATOR_PASSWORD (see .env.example)}"
case "$PGRST_AUTHENTICATOR_PASSWORD" in
  *'"'*|*'
'*) echo "pgbouncer: the password must be one line without a double quote" >&2; exit 1 ;;
esac
umask 077
mkdir -p /run/pgbouncer
printf '"authenticator" "%s"\n' "$PGRST_AUTHENTICATOR_PASSWORD" > /run/pgbouncer/userlist.txt
exec /usr/sbin/pgbouncer /etc/pgbouncer/pgbouncer.ini
