#!/usr/bin/env bash
# Prints the next release version YYYY.MM.DD-N for today (UTC, or the date
# given as $1 in YYYY.MM.DD form) from the existing agent-v* tags: N is one
# more than the highest N tagged that day, else 1.
# Usage (inside the repository): packaging/next-version.sh [YYYY.MM.DD]
set -euo pipefail
day=${1:-$(date -u +%Y.%m.%d)}
[[ "$day" =~ ^[0-9]{4}\.[0-9]{2}\.[0-9]{2}$ ]] || { echo "not a date YYYY.MM.DD: $day" >&2; exit 2; }
n=$(git tag --list "agent-v$day-*" |
  sed -n "s/^agent-v$day-\([0-9][0-9]*\)$/\1/p" | sort -n | tail -1)
echo "$day-$(( ${n:-0} + 1 ))"
