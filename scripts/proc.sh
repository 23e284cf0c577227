# SPDX-License-Identifier: BSD-2-Clause
# scripts/proc.sh — process helpers shared by run.sh and demo.sh (sourced, POSIX sh).

# Waits until FILE holds "listening on HOST:PORT" (printed by PID), then prints HOST:PORT.
# Fails if PID exits first or nothing comes within 10 s.
wait_listening() {
    file=$1 pid=$2 i=0
    while [ $i -lt 100 ]; do
        line=$(grep -m1 '^listening on ' "$file" 2>/dev/null)
        if [ -n "$line" ]; then
            echo "${line#listening on }"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}

# Sends SIGTERM to PID (none: nothing to do) and waits up to 5 s for it to exit; then
# SIGKILL and status 1. Otherwise returns the process's own exit status.
stop_pid() {
    pid=$1
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return $?; }
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "pid $pid did not stop in 5 s; killing it" >&2
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        return 1
    fi
    wait "$pid"
}
