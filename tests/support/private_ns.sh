# SPDX-License-Identifier: MIT
#
# Sourced first by a test that mounts its own small tmpfs: runs the test
# again in a private mount namespace (whatever it mounts vanishes with
# it), or skips the whole test when it is not root or cannot unshare.
if [ -z "${SLIDESCAN_IN_NS:-}" ]; then
    if [ "$(id -u)" != 0 ] ||
        ! unshare --mount --propagation private true 2>/dev/null; then
        echo "ok 1 # SKIP needs root for a private tmpfs (unshare, mount)"
        echo "1..1"
        exit 0
    fi
    SLIDESCAN_IN_NS=1 exec unshare --mount --propagation private "$0" "$@"
fi
