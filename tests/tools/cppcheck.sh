#!/usr/bin/env bash
# Static analysis as CI runs it (.ci/run): cppcheck (Debian 12: 2.10) over src/ and tests/ with the
# warning, portability and performance checks; exit 1 on any finding. Findings that are not bugs are
# silenced where they occur, with an inline "cppcheck-suppress ID ; reason" comment.
# usage: tests/tools/cppcheck.sh   (from anywhere; extra arguments go to cppcheck)
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v cppcheck >/dev/null || { echo "cppcheck.sh: cppcheck is not installed (launch/install-deps.sh)" >&2; exit 1; }
# The one global suppression, varFuncNullUB: a NULL that ends a variadic argument list (our test
# helpers' sentinels) is undefined only where NULL may be a plain 0; POSIX defines it as
# ((void *)0), which is what these platforms (glibc, Debian) use.
exec cppcheck --quiet --std=c11 --language=c -D_GNU_SOURCE -D__x86_64__ -I include -I tests \
    --enable=warning,portability,performance --inline-suppr --suppress=varFuncNullUB \
    --error-exitcode=1 --template='{file}:{line}: {severity} ({id}): {message}' -j 2 "$@" src tests
