# Sourced by the shell tests: a scratch directory $work (kept when KEEP is set) and check NAME CMD...,
# which runs CMD, counts it in $passed or $failed and prints "ok - NAME" or "not ok - NAME" with
# the command's output indented.
work=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
passed=0 failed=0
check() { # NAME COMMAND...: run a check, count and report it
    local name=$1; shift
    if "$@" > "$work/check.log" 2>&1; then
        passed=$((passed + 1)); echo "ok - $name"
    else
        failed=$((failed + 1)); echo "not ok - $name"; sed 's/^/    /' "$work/check.log"
    fi
}
