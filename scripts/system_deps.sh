#!/usr/bin/env bash
# Debian packages for the real local servers and the browser tests. Installs only what is
# missing, and only as root; otherwise says what to install and carries on.
set -euo pipefail
need=()
{ command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ]; } && command -v mariadb-install-db >/dev/null 2>&1 \
  || need+=(mariadb-server)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh-keygen >/dev/null 2>&1 || need+=(openssh-client)
# Debian's own python3 needs python3-venv for `python3 -m venv` (make setup)
if [ "$(command -v python3 || true)" = /usr/bin/python3 ] && ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
  need+=(python3-venv)
fi
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ -f /usr/share/java/mariadb-java-client.jar ] || need+=(libmariadb-java)
[ -f /usr/share/java/xerial-sqlite-jdbc.jar ] || need+=(libxerial-sqlite-jdbc-java)
command -v java >/dev/null 2>&1 || need+=(default-jre-headless)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "system-deps: not root; please install: ${need[*]}" >&2
  exit 0
fi
echo "system-deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
