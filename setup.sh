#!/usr/bin/env bash
# Set up everything the README's two commands need, on a fresh machine. Idempotent.
#   ./setup.sh          Python virtual environment with the dashboard's packages (.venv)
#   ./setup.sh --test   also the test tools: pytest, playwright, Debian's chromium,
#                       dataset-fashion-mnist (so tests run on the real 70,000 images) and
#                       postgresql (the store's tests start a throwaway server of their own),
#                       haproxy (deploy/haproxy.cfg's sticky sessions, tested in front of two servers)
set -euo pipefail
cd "$(dirname "$0")"
want_test=0
[[ "${1:-}" == "--test" ]] && want_test=1

python=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  echo "setup: creating .venv with $($python --version)"
  $python -m venv .venv
fi
requirements=requirements.txt
[[ $want_test == 1 ]] && requirements=requirements-test.txt
stamp=".venv/.installed-$(cat requirements.txt "$requirements" | sha1sum | cut -c1-12)-$want_test"
if [[ ! -f $stamp ]]; then
  echo "setup: installing Python packages from $requirements (first time: a few minutes)"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$requirements"
  touch "$stamp"
fi

if [[ $want_test == 1 ]]; then
  missing=()
  [[ -x /usr/bin/chromium ]] || missing+=(chromium)
  [[ -d /usr/share/datasets/fashion-mnist ]] || missing+=(dataset-fashion-mnist)
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
  [[ -x /usr/sbin/haproxy ]] || missing+=(haproxy)  # the two-server test puts deploy/haproxy.cfg in front
  if (( ${#missing[@]} )); then
    echo "setup: installing Debian packages: ${missing[*]}"
    sudo=""
    [[ $(id -u) == 0 ]] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi
