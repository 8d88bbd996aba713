#!/usr/bin/env bash
# Create the project's virtualenv and install pulsegate (editable) with its dev dependencies.
# On a fresh Debian machine python3 may lack venv/ensurepip (package python3-venv); as root we
# install it, otherwise we say exactly what is missing.
set -euo pipefail
py="${1:-python3}"
venv="${2:-.venv}"
if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "bootstrap: $py is not Python >= 3.11" >&2
  exit 1
fi
if ! "$py" -c 'import ensurepip, venv' 2>/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
  else
    echo "bootstrap: $py has no venv/ensurepip; install python3-venv" >&2
    exit 1
  fi
fi
# mypyc compiles the hot path (setup.py) when a C compiler and Python.h exist; fetch them as root.
if [ -z "${PULSEGATE_PURE_PYTHON:-}" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  inc=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  if ! command -v gcc >/dev/null || [ ! -f "$inc/Python.h" ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc python3-dev
  fi
fi
want=$("$py" -c 'import sys; print(sys.base_prefix)')
if [ -x "$venv/bin/python" ] && [ "$("$venv/bin/python" -c 'import sys; print(sys.base_prefix)')" != "$want" ]; then
  echo "bootstrap: $venv was made with another Python; recreating it with $py"
  rm -rf "$venv"
fi
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
# Compiled modules from an earlier build would shadow the sources: always build afresh.
find src -name '*.so' -delete
"$venv/bin/python" -m pip install -q -e '.[dev]'
