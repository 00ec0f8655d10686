#!/usr/bin/env bash
# Make sure the real services the tests use are up: RabbitMQ on 127.0.0.1:5672
# (guest/guest) and PostgreSQL on 127.0.0.1:5432. Installs them with apt-get
# when missing, starts them when stopped, and waits until they answer.
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

# Deployment checks: promtool validates the alert rules, docker-compose (v1, no engine
# needed) the compose file. Best effort: the tests say so and skip when they are missing.
missing=()
command -v promtool >/dev/null || missing+=(prometheus)
command -v docker-compose >/dev/null || missing+=(docker-compose)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} for the deployment checks" >&2
  apt_install "${missing[@]}" || echo "could not install ${missing[*]}; those checks will skip" >&2
fi
