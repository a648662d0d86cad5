# servers.sh - shell helpers for scripts that start build/fakehub_serve and
# build/gptqd in the background (deploy/demo.sh, tests/web_dashboard.sh);
# source it.

# wait_file FILE PID [SECONDS]: until FILE is non-empty (default 10 s), while
# PID lives; status 1 when PID died or the time ran out.
wait_file() {
    local i
    for i in $(seq 1 $((${3:-10} * 10))); do
        [ -s "$1" ] && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# port_url FILE: the base URL of the daemon whose --port-file is FILE (a
# port, or host:port).
port_url() {
    local port
    port=$(head -n 1 "$1")
    case "$port" in
        *:*) echo "http://$port" ;;
        *) echo "http://127.0.0.1:$port" ;;
    esac
}
