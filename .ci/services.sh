#!/usr/bin/env bash
# Make sure the real services the tests use are up: RabbitMQ on 127.0.0.1:5672
# (guest/guest) and PostgreSQL on 127.0.0.1:5432. Installs them with apt-get
# when missing, starts them when stopped, waits until they answer, and makes a
# PostgreSQL role for the tests when the server asks for a password.
set -euo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local port=$1 name=$2
  for _ in $(seq 1 120); do
    if port_open "$port"; then return 0; fi
    sleep 1
  done
  echo "$name did not come up on 127.0.0.1:$port" >&2
  return 1
}

apt_install() {
  if command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq "$@" >/dev/null
  else
    echo "cannot install $*: no apt-get on this machine" >&2
    return 1
  fi
}

# RabbitMQ (plugins: consistent-hash exchange for per-document consumer shards)
if ! port_open 5672; then
  command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
  echo "starting rabbitmq-server" >&2
  rabbitmq-server -detached
  wait_port 5672 RabbitMQ
fi
if command -v rabbitmq-plugins >/dev/null; then
  rabbitmq-plugins -q enable rabbitmq_consistent_hash_exchange >/dev/null 2>&1 || true
fi
if command -v rabbitmqctl >/dev/null; then
  rabbitmqctl -q await_startup >/dev/null 2>&1 || true
fi

# PostgreSQL (state store and the postgres ERP adapter)
if ! port_open 5432; then
  if ! ls /etc/postgresql/ >/dev/null 2>&1; then apt_install postgresql; fi
  echo "starting postgresql" >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start
  wait_port 5432 PostgreSQL
fi

# The tests need a role that may create databases. A stock PostgreSQL asks for a
# password over TCP (scram) and allows only its own OS user on the socket (peer):
# when the default URL is refused and this runs as root, create a test role with a
# random password over the socket and leave its URL where the tests look for it.
default_pg_url="postgresql://postgres@127.0.0.1:5432/postgres"
pg_url="${ORDERBRIDGE_TEST_POSTGRES_URL:-$(cat .orderbridge/test-postgres-url 2>/dev/null || echo "$default_pg_url")}"
pg_answers() { psql "$1" -Atqc 'select 1' >/dev/null 2>&1; }
if command -v psql >/dev/null && ! pg_answers "$pg_url"; then
  if [ -n "${ORDERBRIDGE_TEST_POSTGRES_URL:-}" ]; then
    echo "PostgreSQL refused ORDERBRIDGE_TEST_POSTGRES_URL ($(echo "$pg_url" | sed -E 's#//([^:/@]+):[^@]*@#//\1:***@#')): $(psql "$pg_url" -Atqc 'select 1' 2>&1 | head -n1)" >&2
    exit 1
  fi
  if [ "$(id -u)" = 0 ] && runuser -u postgres -- psql -Atqc 'select 1' >/dev/null 2>&1; then
    password="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
    runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 -v pw="$password" >/dev/null <<'SQL'
SELECT format('CREATE ROLE orderbridge_test LOGIN CREATEDB PASSWORD %L', :'pw')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'orderbridge_test') \gexec
SELECT format('ALTER ROLE orderbridge_test LOGIN CREATEDB PASSWORD %L', :'pw') \gexec
SQL
    mkdir -p .orderbridge
    pg_url="postgresql://orderbridge_test:${password}@127.0.0.1:5432/postgres"
    (umask 077; echo "$pg_url" > .orderbridge/test-postgres-url)
    pg_answers "$pg_url" || {
      echo "created the role orderbridge_test, but PostgreSQL on 127.0.0.1:5432 still refuses it; check pg_hba.conf allows password logins from 127.0.0.1" >&2
      exit 1
    }
    echo "PostgreSQL asks for a password: created the test role orderbridge_test (URL in .orderbridge/test-postgres-url)" >&2
  else
    echo "PostgreSQL on 127.0.0.1:5432 refused $default_pg_url ($(psql "$default_pg_url" -Atqc 'select 1' 2>&1 | head -n1)); set ORDERBRIDGE_TEST_POSTGRES_URL=postgresql://USER:PASSWORD@HOST:PORT/postgres for a role that may create databases, or run make test as root once so it can create one" >&2
    exit 1
  fi
fi

# Deployment checks: promtool validates the alert rules, docker-compose (v1, no engine
# needed) the compose file. Best effort: the tests say so and skip when they are missing.
missing=()
command -v promtool >/dev/null || missing+=(prometheus)
command -v docker-compose >/dev/null || missing+=(docker-compose)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} for the deployment checks" >&2
  apt_install "${missing[@]}" || echo "could not install ${missing[*]}; those checks will skip" >&2
fi
