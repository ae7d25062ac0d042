# Launcher: the agent runs `sh <plug-in dir>/run.sh`. `node` may not be on the agent's
# PATH, so start the script with the agent's own Node (OUTPOST_NODE). `exec` makes
# Node the step's process itself: the agent's SIGTERM reaches it directly and its
# exit code is the step's.
dir="${OUTPOST_PLUGIN_DIR:-$(dirname "$0")}"
exec "${OUTPOST_NODE:-node}" "$dir/wait-for-url.mjs" "$@"
