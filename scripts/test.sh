#!/usr/bin/env bash
# Runs the test suite: makes .venv with the project and its dev tools, brings the images up to
# date when a Docker engine answers, then runs ruff, mypy and pytest.
# Arguments go to pytest (e.g. scripts/test.sh -k worker). Exit 5 (no tests ran) is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  .venv/bin/pip install --quiet --upgrade pip
  .venv/bin/pip install --quiet -e '.[dev]'
  touch "$stamp"
fi

# The images the Docker tests run: a rebuild with nothing changed takes seconds.
if docker info >/dev/null 2>&1; then
  scripts/build-images.sh
fi

.venv/bin/ruff check .
.venv/bin/mypy orchestration_protocol orchestration_views worker manager scripted_model gateway dashboard

set +e
.venv/bin/pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure here." >&2
  exit 1
fi
exit "$status"
