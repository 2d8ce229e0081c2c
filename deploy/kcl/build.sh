#!/usr/bin/env bash
# Builds the KCL DynamoDB Streams launcher into target/classes + target/lib/*.jar and prints the
# classpath to pass to `java -cp`. Maven resolves from Maven Central into ~/.m2 (override with
# MAVEN_REPO_LOCAL), so only the first build downloads (~65 MB, ~30 s); later builds take ~5-9 s.
# Extra arguments go to mvn (e.g. -o for offline).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo_args=()
if [[ -n "${MAVEN_REPO_LOCAL:-}" ]]; then
  repo_args=("-Dmaven.repo.local=${MAVEN_REPO_LOCAL}")
fi
mvn -B -q -Dstyle.color=never -f "$here/pom.xml" "${repo_args[@]}" package "$@" >&2
echo "$here/target/classes:$here/target/lib/*"
