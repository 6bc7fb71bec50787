#!/usr/bin/env bash
# Set up (or refresh) the virtual environment and run the whole test suite, then lint.
source "$(dirname "$0")/venv.sh"
python -m pytest -q "$@"
ruff check store tools tests
lint-imports
