#!/usr/bin/env bash
# Make sure MariaDB (127.0.0.1:3306) and Redis (127.0.0.1:6379) answer: start them with this
# machine's documented commands if they do not, installing Debian's packages first where absent.
# Services given by MYSQL_URL / REDIS_URL elsewhere are left alone.
set -euo pipefail

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() {  # port, name
  for _ in $(seq 1 100); do listening "$1" && return 0; sleep 0.2; done
  echo "$2 did not start on port $1" >&2
  return 1
}

install() {  # debian packages...
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing $*: install it (apt-get install $*) or point MYSQL_URL / REDIS_URL at a server" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

case "${MYSQL_URL:-mysql://root@127.0.0.1:3306/jobs}" in
  *@127.0.0.1:3306/*|*@localhost:3306/*)
    if ! listening 3306; then
      fresh=no
      [ -x /usr/sbin/mariadbd ] || { install mariadb-server; fresh=yes; }
      mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
      start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
      wait_for 3306 MariaDB
      if [ "$fresh" = yes ]; then
        # Debian's root logs in through the socket only; local development uses root without a password.
        mariadb -uroot -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD(''); FLUSH PRIVILEGES;"
      fi
      echo "started MariaDB on 127.0.0.1:3306"
    fi ;;
esac

case "${REDIS_URL:-redis://127.0.0.1:6379/0}" in
  redis://127.0.0.1:6379*|redis://localhost:6379*)
    if ! listening 6379; then
      command -v redis-server >/dev/null || install redis-server
      mkdir -p /var/lib/redis /var/log/redis
      redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log
      wait_for 6379 Redis
      echo "started Redis on 127.0.0.1:6379"
    fi ;;
esac
