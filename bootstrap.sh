#!/usr/bin/env bash
# One-step set-up and run, for a fresh Debian or Ubuntu machine.
#
#   ./bootstrap.sh main [ARGS]   set up, then run the main job (nvmf-offload demo ARGS)
#   ./bootstrap.sh test [ARGS]   set up, then run the whole test suite (pytest ARGS)
#   ./bootstrap.sh setup         set up only
#
# Set-up: Debian packages the simulators need (Icarus Verilog, a C++ compiler
# and make for Verilator, ccache, python3-venv) when missing, then a virtual
# environment in .venv with the pinned dependencies of pyproject.toml and this
# package installed in editable mode. Re-running is cheap: each step is skipped
# when already done.
set -euo pipefail
cd "$(dirname "$0")"

what=${1:-}
[ $# -gt 0 ] && shift
case "$what" in
  main|test|setup) ;;
  *) echo "usage: $0 main|test|setup [ARGS...]" >&2; exit 2 ;;
esac

say() { printf '[bootstrap] %s\n' "$*" >&2; }

apt_install() {
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then sudo="sudo"; else
      say "need root or sudo to install: $*"; exit 1; fi
  fi
  say "installing Debian packages: $*"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

missing=()
command -v iverilog >/dev/null || missing+=(iverilog)
command -v g++ >/dev/null || missing+=(g++)
command -v make >/dev/null || missing+=(make)
command -v ccache >/dev/null || missing+=(ccache)
command -v python3 >/dev/null || missing+=(python3)
if command -v python3 >/dev/null && ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  missing+=(python3-venv)
fi
if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi

python3 - <<'PY' || { say "Python 3.11 or newer is needed"; exit 1; }
import sys
sys.exit(sys.version_info < (3, 11))
PY

venv=.venv
stamp=$venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  [ -x $venv/bin/python ] || python3 -m venv $venv
  say "installing pinned Python dependencies into $venv"
  $venv/bin/python -m pip install -q pip==26.3
  $venv/bin/python -m pip install -q -e .
  rm -f $venv/.installed-*
  touch "$stamp"
fi
export PATH="$PWD/$venv/bin:$PATH"

case "$what" in
  main)  exec nvmf-offload demo "$@" ;;
  test)  mkdir -p build
         exec pytest -n 2 --dist loadgroup --junitxml=build/test-results.xml "$@" ;;
  setup) say "ready: source $venv/bin/activate" ;;
esac
