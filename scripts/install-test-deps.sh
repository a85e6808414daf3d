#!/usr/bin/env bash
# Installs the real SDKs the end-to-end tests drive, from PyPI and npm, into
# $PICKET_TEST_DEPS (default ~/.cache/picket-test-deps), outside the
# repository. Idempotent: a stamp of the pinned versions skips a repeat.
#
#   py-sdk/          Python sentry-sdk (gzip transport)
#   py-sdk-brotli/   the same SDK with brotli importable (br transport)
#   py-raven/        the legacy raven 6.10.0 client
#   py-smtp/         aiosmtpd, a real SMTP server for the mail plugin's tests
#   node/            @sentry/node 11
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
deps="${PICKET_TEST_DEPS:-$HOME/.cache/picket-test-deps}"
sdk="$root/tests/sdk"
inputs=("$sdk"/python/requirements-*.txt "$sdk/node/package.json" "$sdk/node/package-lock.json" "$0")
stamp="$(cat "${inputs[@]}" | sha256sum | cut -c1-32)"
if [[ -f "$deps/.stamp" && "$(cat "$deps/.stamp")" == "$stamp" ]]; then
  echo "test dependencies are up to date in $deps"
  exit 0
fi
mkdir -p "$deps"
rm -f "$deps/.stamp"

venv() { # NAME REQUIREMENTS
  echo "  python venv $1 ($2)"
  rm -rf "${deps:?}/$1"
  python3 -m venv "$deps/$1"
  "$deps/$1/bin/pip" install --quiet --disable-pip-version-check -r "$sdk/python/$2"
}
venv py-sdk requirements-sdk.txt
venv py-sdk-brotli requirements-sdk-brotli.txt
venv py-raven requirements-raven.txt
venv py-smtp requirements-smtp.txt

echo "  node modules (@sentry/node)"
rm -rf "$deps/node"
mkdir -p "$deps/node"
cp "$sdk/node/package.json" "$sdk/node/package-lock.json" "$deps/node/"
(cd "$deps/node" && npm ci --silent --no-audit --no-fund)

echo "$stamp" > "$deps/.stamp"
echo "test dependencies installed in $deps"
