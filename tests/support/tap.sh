# SPDX-License-Identifier: MIT
#
# TAP output for the end-to-end scripts that run without a daemon
# (daemon_env.sh has its own, with a private daemon around them).
# Sourced; the count is $n, so a script ends with: echo "1..$n".
n=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
nok() { n=$((n + 1)); echo "not ok $n - $*"; }
skip() { n=$((n + 1)); echo "ok $n # SKIP $*"; }
# check TEXT CMD...: ok when CMD succeeds.
check() {
    local what=$1
    shift
    if "$@"; then ok "$what"; else nok "$what"; fi
}
# json FILE EXPR: a Python expression evaluated on the JSON document d.
json() {
    python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
print(eval("(" + sys.argv[2] + ")"))' "$1" "$2"
}
# jtrue FILE EXPR: the expression holds.
jtrue() {
    [ "$(json "$1" "$2")" = True ]
}
