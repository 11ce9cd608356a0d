#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback, for the queue tests: Debian's
# postgresql package, one cluster under /tmp that DIR/cluster names (the
# server's user must reach it, which a test's private temp folder does not
# allow), removed by `stop`.
#
#   scripts/pg-scratch.sh start DIR [--tls]   prints the server's URL
#   scripts/pg-scratch.sh restart DIR [SECONDS]  crashes it (immediate
#                                      shutdown), waits, starts it again
#   scripts/pg-scratch.sh stop DIR
#
# The cluster's user is `vmatte` with password `$VMATTE_PG_PASSWORD`
# (default vmatte-test-pw), required on TCP, so tests prove that a real
# password works and never leaks. With --tls the server takes only TLS
# connections, with a self-signed certificate for localhost in DIR/ca.pem.
set -euo pipefail

cmd=${1:?usage: pg-scratch.sh start|restart|stop DIR [--tls|SECONDS]}
dir=${2:?usage: pg-scratch.sh start|restart|stop DIR [--tls|SECONDS]}
tls=${3:-}
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [[ ! -x "$bindir/initdb" ]]; then
  echo "pg-scratch: PostgreSQL's server is not installed; run scripts/deps.sh" >&2
  exit 1
fi

# PostgreSQL refuses to run as root; CI runs as root.
as_pg() {
  if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case $cmd in
start)
  mkdir -p "$dir"
  cluster=$(mktemp -d /tmp/vmatte-pg.XXXXXX)
  echo "$cluster" >"$dir/cluster"
  if [[ $(id -u) == 0 ]]; then chown postgres: "$cluster"; fi
  password=${VMATTE_PG_PASSWORD:-vmatte-test-pw}
  printf '%s\n' "$password" >"$cluster/pwfile"
  if [[ $(id -u) == 0 ]]; then chown postgres: "$cluster/pwfile"; fi
  as_pg "$bindir/initdb" -D "$cluster/data" -U vmatte --pwfile="$cluster/pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --no-sync >"$cluster/initdb.log"
  rm -f "$cluster/pwfile"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  {
    echo "listen_addresses = '127.0.0.1'"
    echo "port = $port"
    echo "unix_socket_directories = '$cluster'"
    echo "fsync = off"
    echo "max_connections = 100"
  } >>"$cluster/data/postgresql.conf"
  if [[ $tls == --tls ]]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
      -addext subjectAltName=DNS:localhost \
      -keyout "$cluster/data/server.key" -out "$cluster/data/server.crt" 2>/dev/null
    cp "$cluster/data/server.crt" "$dir/ca.pem"
    chmod 600 "$cluster/data/server.key"
    if [[ $(id -u) == 0 ]]; then chown postgres: "$cluster/data/server.key" "$cluster/data/server.crt"; fi
    echo "ssl = on" >>"$cluster/data/postgresql.conf"
    # TLS or nothing over TCP.
    sed -i -E 's/^host(\s)/hostssl\1/' "$cluster/data/pg_hba.conf"
  fi
  as_pg "$bindir/pg_ctl" -D "$cluster/data" -l "$cluster/server.log" -w -t 60 start >/dev/null
  echo "postgres://vmatte:$password@127.0.0.1:$port/postgres"
  ;;
restart)
  down=${3:-1}
  if [[ ! $down =~ ^[0-9]+$ ]]; then
    echo "pg-scratch: restart takes whole SECONDS to stay down, not '$down'" >&2
    exit 2
  fi
  if [[ ! -f "$dir/cluster" ]]; then
    echo "pg-scratch: no server was started under $dir (no $dir/cluster)" >&2
    exit 1
  fi
  cluster=$(cat "$dir/cluster")
  # Already down (a restart cut short): nothing to crash, only to start.
  if [[ -f "$cluster/data/postmaster.pid" ]]; then
    as_pg "$bindir/pg_ctl" -D "$cluster/data" -m immediate -w stop >/dev/null
  fi
  sleep "$down"
  as_pg "$bindir/pg_ctl" -D "$cluster/data" -l "$cluster/server.log" -w -t 60 start >/dev/null
  ;;
stop)
  [[ -f "$dir/cluster" ]] || exit 0
  cluster=$(cat "$dir/cluster")
  if [[ -f "$cluster/data/postmaster.pid" ]]; then
    as_pg "$bindir/pg_ctl" -D "$cluster/data" -m immediate -w stop >/dev/null
  fi
  rm -rf "$cluster" "$dir/cluster"
  ;;
*)
  echo "usage: pg-scratch.sh start|restart|stop DIR [--tls|SECONDS]" >&2
  exit 2
  ;;
esac
