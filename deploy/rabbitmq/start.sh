#!/bin/sh
# RabbitMQ for orderbridge's compose deployment (the container's command).
#
# * The administrator is RABBITMQ_ADMIN_USER with the password of the secret
#   rabbitmq_admin_password (RabbitMQ creates it on the first boot of an empty node).
# * Once the node is up, the application user RABBITMQ_APP_USER gets the password of
#   the secret rabbitmq_app_password and only the permissions in RABBITMQ_APP_CONFIGURE,
#   _WRITE and _READ (orderbridge.* names; see shared/broker/definitions.py), and the
#   topology of definitions.json is imported. Then /tmp/orderbridge-ready exists, which
#   the healthcheck requires, so no service connects before its user exists.
# No password is in a committed file; add_user reads it on stdin (change_password, on a
# restart, takes it as an argument: visible only inside this container, briefly).
set -eu
: "${RABBITMQ_ADMIN_USER:?}" "${RABBITMQ_APP_USER:?}"
: "${RABBITMQ_APP_CONFIGURE:?}" "${RABBITMQ_APP_WRITE:?}" "${RABBITMQ_APP_READ:?}"
RABBITMQ_DEFAULT_USER="$RABBITMQ_ADMIN_USER"
RABBITMQ_DEFAULT_PASS="$(cat /run/secrets/rabbitmq_admin_password)"
export RABBITMQ_DEFAULT_USER RABBITMQ_DEFAULT_PASS
rm -f /tmp/orderbridge-ready

(
  set -eu
  # The server creates the Erlang cookie on its first boot; a CLI call before that would
  # create one (as root) that the server could not read.
  export HOME=/var/lib/rabbitmq
  tries=0
  until [ -s "$HOME/.erlang.cookie" ] && rabbitmqctl -q await_startup --timeout 10 >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -gt 60 ]; then echo "orderbridge: RabbitMQ did not start" >&2; exit 1; fi
    sleep 5
  done
  if rabbitmqctl -q list_users --silent | cut -f1 | grep -qx "$RABBITMQ_APP_USER"; then
    # a changed secret takes effect on restart
    rabbitmqctl -q change_password "$RABBITMQ_APP_USER" "$(cat /run/secrets/rabbitmq_app_password)"
  else
    rabbitmqctl -q add_user "$RABBITMQ_APP_USER" < /run/secrets/rabbitmq_app_password
  fi
  rabbitmqctl -q set_permissions -p / "$RABBITMQ_APP_USER" \
    "$RABBITMQ_APP_CONFIGURE" "$RABBITMQ_APP_WRITE" "$RABBITMQ_APP_READ"
  rabbitmqctl -q import_definitions /etc/rabbitmq/definitions.json
  touch /tmp/orderbridge-ready
  echo "orderbridge: application user $RABBITMQ_APP_USER and topology ready"
) &

exec docker-entrypoint.sh rabbitmq-server
