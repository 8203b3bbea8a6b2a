#!/usr/bin/env bash
# Browser tests of the Audit Logs page: installs what is missing (Debian's chromium, the pinned
# playwright-core from package-lock.json), then runs node's test runner against
# target/debug/auditlog (built here if absent). Never downloads a browser build of its own.
set -euo pipefail
cd "$(dirname "$0")"
root="$(cd ../.. && pwd)"

if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "tests/browser: /usr/bin/chromium is missing; install it: apt-get install -y chromium" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "tests/browser: node and npm are missing" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
pinned="$(node -p 'require("./package.json").devDependencies["playwright-core"]')"
installed="$(node -p 'try { require("./node_modules/playwright-core/package.json").version } catch (_) { "" }')"
if [ "$installed" != "$pinned" ]; then
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
fi
target="${CARGO_TARGET_DIR:-$root/target}"
export AUDITLOG_BIN="${AUDITLOG_BIN:-$target/debug/auditlog}"
if [ ! -x "$AUDITLOG_BIN" ]; then
  (cd "$root" && cargo build -p auditlog --locked)
fi

mkdir -p "$root/tests/artifacts"
exec node --test --test-concurrency=1 --test-reporter=spec page.test.mjs
