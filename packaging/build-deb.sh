#!/usr/bin/env bash
# Builds the Debian package of callmetrics into target/debian/ and prints its path last.
#
#   packaging/build-deb.sh
#
# Needs cargo-deb (`cargo install cargo-deb --locked`), gzip, and dpkg-dev (dpkg-shlibdeps, for the
# `$auto` dependencies). The assets are listed in Cargo.toml under [package.metadata.deb].
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo deb --version >/dev/null 2>&1; then
  echo "error: cargo-deb is missing; install it with: cargo install cargo-deb --locked" >&2
  exit 1
fi

# Run from `cargo test`, the caller's package variables are in the environment. Build scripts
# (ring's) ask to rerun when CARGO_PKG_NAME or CARGO_MANIFEST_DIR change, and cargo compares them
# with its own environment: left in, they would rebuild a release build made from a shell.
while IFS= read -r var; do
  case "$var" in
    CARGO_PKG_* | CARGO_MANIFEST_* | CARGO_BIN_EXE_* | CARGO_CRATE_NAME | CARGO_PRIMARY_PACKAGE | CARGO_TARGET_TMPDIR)
      unset "$var" ;;
  esac
done < <(compgen -e)

# The release binary. An up-to-date build is reused as is (cargo only checks its fingerprints);
# a stale one is rebuilt, so the package never holds an old binary.
cargo build --release --locked --bin callmetrics >&2
bin="${CARGO_TARGET_DIR:-target}/release/callmetrics"

# The man page and the completions, generated from the grammar of this very binary. Cargo.toml's
# assets take them from target/assets/.
assets=target/assets
rm -rf "$assets"
"$bin" generate --out "$assets" >&2
gzip -9n "$assets/callmetrics.1"
for f in callmetrics.1.gz callmetrics.bash _callmetrics callmetrics.fish; do
  test -s "$assets/$f" || { echo "error: $assets/$f was not generated" >&2; exit 1; }
done

# cargo deb prints the path of the package on stdout.
cargo deb --no-build --locked
