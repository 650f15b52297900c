#!/usr/bin/env bash
# Idempotent machine set-up for `make demo` and `make test`: the PostgreSQL 15
# packages admmgt needs, then a venv with the project installed editable.
# Safe to run again: each step checks before it acts.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
venv="${ADMMGT_VENV:-$here/.venv}"
packages=(postgresql-15 postgresql-plpython3-15 postgresql-15-cron postgresql-contrib)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian's postgresql-common starts a main cluster on port 5432; admmgt's
  # sandbox does not need it, and it is left as the package made it.
fi

if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating $venv"
  python3 -m venv "$venv"
fi
stamp="$venv/.admmgt-installed"
if [ ! -f "$stamp" ] || [ "$here/pyproject.toml" -nt "$stamp" ]; then
  echo "setup: pip install -e .[dev]"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -e "$here[dev]"
  touch "$stamp"
fi
