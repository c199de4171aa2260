#!/usr/bin/env bash
# Set up clbench on a fresh machine: the Fashion-MNIST files (Debian), a venv, the package.
#   bash ci/setup.sh            then   .venv/bin/clbench run
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null
  else
    echo "note: Fashion-MNIST not installed; 'sudo apt-get install dataset-fashion-mnist' or pass --data-root" >&2
  fi
fi

# headless Chromium and its WebDriver: the leaderboard page's browser test (tests/leaderboard)
if ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "note: no chromedriver; 'sudo apt-get install chromium chromium-driver' for the browser test" >&2
  fi
fi

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test,ray]" -c ci/constraints.txt   # ray: --executor ray
echo "clbench installed: .venv/bin/clbench"
