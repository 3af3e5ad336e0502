#!/usr/bin/env bash
# Start, stop or report the real servers maild's tests and benchmarks use:
#   - Dovecot (IMAP 127.0.0.1:10143 with STARTTLS, IMAPS 127.0.0.1:10993), config from scripts/dovecot/
#   - PostgreSQL 15, a private cluster on 127.0.0.1:15432
# Everything lives under var/servers/ (override with MAILD_SERVERS_DIR); no system config file is read
# or changed. Safe to run again: running servers are checked and reused.
#
#   bash scripts/servers.sh start|stop|status
#
# Connection facts for the tests are written to var/servers/env (KEY=VALUE lines).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${MAILD_SERVERS_DIR:-$ROOT/var/servers}
ENV_FILE=$STATE/env   # always here, where the tests look, even when the data lives elsewhere

# The mail and database files belong to the vmail and postgres users, who must be able to reach
# them. A checkout under a private directory (/root, say) is not reachable: then the data goes
# to a directory of its own under /var/tmp, named after the checkout.
world_searchable() {
    local dir=$1
    while [ "$dir" != "/" ]; do
        if [ -e "$dir" ]; then
            [ "$(( 0$(stat -c %a "$dir") & 1 ))" -eq 1 ] || return 1
        fi
        dir=$(dirname "$dir")
    done
}
if [ -z "${MAILD_SERVERS_DIR:-}" ] && ! world_searchable "$STATE"; then
    STATE=/var/tmp/maild-servers-$(printf '%s' "$ROOT" | cksum | cut -d' ' -f1)
fi

IMAP_PORT=10143
IMAPS_PORT=10993
PG_PORT=15432
PG_VERSION=15
PGBIN=/usr/lib/postgresql/$PG_VERSION/bin
PG_ROLE=maild
PG_PASSWORD=maild-pw
PG_DB=maild
HELPDESK_USER=helpdesk@example.test
HELPDESK_PASSWORD=helpdesk-pw

DOVECOT_DIR=$STATE/dovecot
DOVECOT_CONF=$DOVECOT_DIR/dovecot.conf
PG_DIR=$STATE/pg
PG_DATA=$PG_DIR/data
PG_LOG=$PG_DIR/log/postgresql.log

log() { printf 'servers: %s\n' "$*"; }
die() { printf 'servers: error: %s\n' "$*" >&2; exit 1; }

# Unix socket paths are limited to ~107 bytes; a deep checkout would overflow them.
short_dir() {  # $1 = preferred dir, $2 = name for the fallback under /tmp
    if [ ${#1} -le 70 ]; then
        printf '%s' "$1"
    else
        printf '/tmp/maild-%s-%s' "$2" "$(printf '%s' "$1" | cksum | cut -d' ' -f1)"
    fi
}
DOVECOT_BASE=$(short_dir "$DOVECOT_DIR/run" dovecot)
PG_RUN=$(short_dir "$PG_DIR/run" pg)

need_root() {
    [ "$(id -u)" -eq 0 ] || die "must run as root to $1 (Dovecot's master and runuser need it)"
}

# True when something accepts TCP connections on 127.0.0.1:$1.
port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# ---------------------------------------------------------------- install

install_missing() {
    local pkgs=()
    { command -v dovecot >/dev/null && [ -x /usr/lib/dovecot/imap ]; } || pkgs+=(dovecot-imapd)
    [ -x "$PGBIN/initdb" ] || pkgs+=("postgresql-$PG_VERSION")
    command -v openssl >/dev/null || pkgs+=(openssl)
    [ ${#pkgs[@]} -eq 0 ] && return 0
    need_root "install ${pkgs[*]}"
    log "installing ${pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Keep the packages' own system services from starting: we run private instances.
    local policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy"
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    local apt=(apt-get install -y -q --no-install-recommends "${pkgs[@]}")
    if ! compgen -G '/var/lib/apt/lists/*_Packages' >/dev/null; then
        apt-get update -q
        "${apt[@]}"
    elif ! "${apt[@]}"; then
        apt-get update -q
        "${apt[@]}"
    fi
}

ensure_vmail() {
    id vmail >/dev/null 2>&1 && return 0
    log "creating system user vmail"
    useradd --system --user-group --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin vmail
}

# The mail and database files are owned by vmail and postgres: both must reach $STATE.
check_access() {
    mkdir -p "$STATE" "$(dirname "$ENV_FILE")"
    chmod 755 "$STATE"
    local user
    for user in vmail postgres; do
        runuser -u "$user" -- test -x "$STATE" || die "user $user cannot reach $STATE (a parent \
directory is not world-searchable); set MAILD_SERVERS_DIR to a directory it can reach"
    done
}

# ---------------------------------------------------------------- dovecot

dovecot_pid() {
    local pid
    pid=$(cat "$DOVECOT_BASE/master.pid" 2>/dev/null) || return 1
    [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dovecot ] && printf '%s' "$pid"
}

make_cert() {
    local tls=$DOVECOT_DIR/tls
    [ -s "$tls/cert.pem" ] && [ -s "$tls/key.pem" ] && return 0
    log "making a self-signed certificate for 127.0.0.1 / localhost"
    mkdir -p "$tls"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 \
        -keyout "$tls/key.pem" -out "$tls/cert.pem" -subj "/CN=localhost" \
        -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
        -addext "extendedKeyUsage=serverAuth" 2>/dev/null
    chmod 600 "$tls/key.pem"
    chmod 644 "$tls/cert.pem"
}

render() {  # template -> stdout
    sed -e "s|@STATE_DIR@|$DOVECOT_DIR|g" -e "s|@BASE_DIR@|$DOVECOT_BASE|g" \
        -e "s|@IMAP_PORT@|$IMAP_PORT|g" -e "s|@IMAPS_PORT@|$IMAPS_PORT|g" "$1"
}

dovecot_prepare() {
    mkdir -p "$DOVECOT_DIR"/{lib,log,mail} "$DOVECOT_BASE"
    chown vmail:vmail "$DOVECOT_DIR/mail"
    chmod 755 "$DOVECOT_DIR/mail"
    make_cert
    render "$ROOT/scripts/dovecot/users.in" >"$DOVECOT_DIR/users.new"
    render "$ROOT/scripts/dovecot/dovecot.conf.in" >"$DOVECOT_CONF.new"
    chmod 640 "$DOVECOT_DIR/users.new"
    chgrp dovecot "$DOVECOT_DIR/users.new"
    mv -f "$DOVECOT_DIR/users.new" "$DOVECOT_DIR/users"
    if cmp -s "$DOVECOT_CONF.new" "$DOVECOT_CONF"; then
        rm -f "$DOVECOT_CONF.new"
    else
        mv -f "$DOVECOT_CONF.new" "$DOVECOT_CONF"
        CONFIG_CHANGED=1
    fi
}

dovecot_start() {
    local pid
    CONFIG_CHANGED=0
    dovecot_prepare  # plain call: `set -e` is off inside a function used in a condition
    if pid=$(dovecot_pid); then
        if [ "$CONFIG_CHANGED" -eq 1 ]; then
            log "dovecot: configuration changed, reloading (pid $pid)"
            doveadm -c "$DOVECOT_CONF" reload
        fi
        log "dovecot: already running (pid $pid)"
        return 0
    fi
    for port in $IMAP_PORT $IMAPS_PORT; do
        port_open "$port" && die "port $port is taken by another program; stop it first"
    done
    log "dovecot: starting"
    # A socket left by an older config makes auth retry it for 5 s (the penalty is off).
    rm -f "$DOVECOT_BASE/anvil-auth-penalty"
    # The master keeps stderr open: never leave it attached to a caller's pipe.
    if ! dovecot -c "$DOVECOT_CONF" </dev/null >"$DOVECOT_DIR/log/start.log" 2>&1; then
        cat "$DOVECOT_DIR/log/start.log" >&2
        die "dovecot did not start (log: $DOVECOT_DIR/log/dovecot.log)"
    fi
    for _ in $(seq 100); do
        port_open "$IMAP_PORT" && port_open "$IMAPS_PORT" && return 0
        sleep 0.1
    done
    tail -n 20 "$DOVECOT_DIR/log/dovecot.log" >&2 || true
    die "dovecot did not open ports $IMAP_PORT/$IMAPS_PORT"
}

dovecot_stop() {
    local pid
    pid=$(dovecot_pid) || { log "dovecot: not running"; return 0; }
    need_root "stop Dovecot"
    log "dovecot: stopping (pid $pid)"
    # The whole process group: Dovecot lets logged-in imap processes outlive their master.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
    for _ in $(seq 100); do
        [ -e "/proc/$pid" ] || return 0
        sleep 0.1
    done
    die "dovecot (pid $pid) did not stop"
}

# ---------------------------------------------------------------- postgresql

as_postgres() { runuser -u postgres -- "$@"; }

pg_running() {
    [ -s "$PG_DATA/PG_VERSION" ] && as_postgres "$PGBIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1
}

pg_psql() {  # SQL on stdin, as the postgres superuser over the private socket
    as_postgres "$PGBIN/psql" -h "$PG_RUN" -p "$PG_PORT" -U postgres -d postgres \
        -v ON_ERROR_STOP=1 -qAtX "$@"
}

pg_start() {
    mkdir -p "$PG_DIR/log" "$PG_RUN"
    chown postgres:postgres "$PG_DIR/log" "$PG_RUN"
    if [ ! -s "$PG_DATA/PG_VERSION" ]; then
        log "postgresql: initdb $PG_DATA"
        mkdir -p "$PG_DATA"
        chown postgres:postgres "$PG_DATA"
        chmod 700 "$PG_DATA"
        as_postgres "$PGBIN/initdb" -D "$PG_DATA" -U postgres -E UTF8 --locale=C.UTF-8 \
            --auth-local=trust --auth-host=scram-sha-256 >"$PG_DIR/log/initdb.log"
    fi
    if pg_running; then
        log "postgresql: already running"
    else
        port_open "$PG_PORT" && die "port $PG_PORT is taken by another program; stop it first"
        log "postgresql: starting"
        as_postgres "$PGBIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 -o "\
            -c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories=$PG_RUN \
            -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
            start >/dev/null || { tail -n 20 "$PG_LOG" >&2; die "postgresql did not start"; }
    fi
    pg_psql <<SQL
DO \$\$BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_ROLE') THEN
    CREATE ROLE $PG_ROLE LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
  ELSE
    ALTER ROLE $PG_ROLE LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
  END IF;
END\$\$;
-- A test's DROP DATABASE ... WITH (FORCE) must be able to end an autovacuum worker in its database.
GRANT pg_signal_backend TO $PG_ROLE;
SQL
    if [ -z "$(pg_psql -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" ]; then
        pg_psql -c "CREATE DATABASE $PG_DB OWNER $PG_ROLE"
    fi
}

pg_stop() {
    pg_running || { log "postgresql: not running"; return 0; }
    need_root "stop PostgreSQL"
    log "postgresql: stopping"
    as_postgres "$PGBIN/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null
}

# ---------------------------------------------------------------- env + status

write_env() {
    mkdir -p "$STATE"
    cat >"$ENV_FILE.new" <<EOF
# Written by scripts/servers.sh; read by tests/servers.py. Shell-sourceable.
MAILD_TEST_IMAP_HOST=127.0.0.1
MAILD_TEST_IMAP_PORT=$IMAP_PORT
MAILD_TEST_IMAPS_PORT=$IMAPS_PORT
MAILD_TEST_IMAP_CA_FILE=$DOVECOT_DIR/tls/cert.pem
MAILD_TEST_IMAP_USER=$HELPDESK_USER
MAILD_TEST_IMAP_PASSWORD=$HELPDESK_PASSWORD
MAILD_TEST_IMAP_USER_PATTERN=test*@example.test
MAILD_TEST_IMAP_USER_PASSWORD=pw
MAILD_TEST_DOVECOT_CONF=$DOVECOT_CONF
MAILD_TEST_DOVECOT_PIDFILE=$DOVECOT_BASE/master.pid
MAILD_TEST_DOVECOT_MAIL=$DOVECOT_DIR/mail
MAILD_TEST_DOVECOT_LOG=$DOVECOT_DIR/log/dovecot.log
MAILD_TEST_PG_HOST=127.0.0.1
MAILD_TEST_PG_PORT=$PG_PORT
MAILD_TEST_PG_USER=$PG_ROLE
MAILD_TEST_PG_PASSWORD=$PG_PASSWORD
MAILD_TEST_PG_DB=$PG_DB
MAILD_TEST_PG_URL=postgresql+psycopg://$PG_ROLE:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB
EOF
    mv -f "$ENV_FILE.new" "$ENV_FILE"
}

status() {
    local rc=0 pid
    if pid=$(dovecot_pid) && port_open "$IMAP_PORT"; then
        log "dovecot:    running (pid $pid) imap 127.0.0.1:$IMAP_PORT (STARTTLS), imaps 127.0.0.1:$IMAPS_PORT"
        log "            config $DOVECOT_CONF, log $DOVECOT_DIR/log/dovecot.log, CA $DOVECOT_DIR/tls/cert.pem"
        log "            users $HELPDESK_USER/$HELPDESK_PASSWORD and any test*@example.test/pw"
    else
        log "dovecot:    not running"; rc=1
    fi
    if pg_running && port_open "$PG_PORT"; then
        log "postgresql: running 127.0.0.1:$PG_PORT, data $PG_DATA, log $PG_LOG"
        log "            postgresql+psycopg://$PG_ROLE:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB"
    else
        log "postgresql: not running"; rc=1
    fi
    [ -s "$ENV_FILE" ] && log "env file:   $ENV_FILE"
    return $rc
}

case "${1:-}" in
    start)
        install_missing
        need_root "start the servers"
        ensure_vmail
        check_access
        dovecot_start
        pg_start
        write_env
        status
        ;;
    stop)
        dovecot_stop
        pg_stop
        ;;
    status)
        status
        ;;
    *)
        echo "usage: $0 start|stop|status" >&2
        exit 2
        ;;
esac
