// The text of GET /agent/install.sh (worker/routes/install-script.ts renders it with the
// server's origin and the package verifier): a POSIX sh installer, documented in
// docs/agent-lifecycle.md, "Installing". It runs as `curl … | sh -s -- …`, so:
// everything quoted, no bashisms (tested with dash), and every command that could read
// stdin has it from /dev/null — stdin is the rest of the script.
//
// Kept free of backticks and dollar-brace: it is a String.raw template, verbatim.
// Placeholders: @OUTPOST_SERVER@ (a single-quoted shell word) and @OUTPOST_VERIFY_PROGRAM@.
export const INSTALL_SCRIPT_TEMPLATE = String.raw`#!/bin/sh
# Outpost agent installer, served by GET /agent/install.sh (see docs/agent-lifecycle.md,
# "Installing", in the Outpost repository).
#
#   curl -fsSL SERVER/agent/install.sh | sh -s -- --token TOKEN --name NAME [options]
#
# Downloads the current agent version from the server this script came from, checks
# its sha256 and its release-key signature, unpacks it into DIR/versions/VERSION,
# points DIR/current at it, registers the agent (its home: DIR/home) and starts it, or
# with --service installs and starts a systemd unit. Needs node >= 22, tar, curl or
# wget, and sha256sum or shasum; no checkout, no npm.
#
# Exit codes: 0 installed; 1 failed (the message says why and what was done);
# 2 bad options; 3 --service on a machine without systemd.
set -eu
umask 077 # the agent's files are its user's alone (its home is 0700, like the agent makes it)

# The server this script came from, filled in when it was served.
SERVER=@OUTPOST_SERVER@
PROG=outpost-install

usage() {
  cat <<'OUTPOST_USAGE_EOF'
usage: curl -fsSL SERVER/agent/install.sh | sh -s -- --token TOKEN --name NAME [options]

  --token TOKEN  a registration token (single use); or set OUTPOST_REGISTRATION_TOKEN
                 in the environment instead, which keeps it off the process list
  --name NAME    the agent's name (letters, digits, . _ -)
  --home DIR     where the agent lives (default: ~/.outpost-agent, as root
                 /var/lib/outpost-agent): DIR/versions/VERSION, DIR/current, DIR/home
  --tags a,b     the agent's tags
  --service      install and start a systemd unit (outpost-agent-NAME.service; root)
                 instead of starting the agent in the background now
  --replace      take over the name of a revoked or offline agent (a rebuilt machine)
  --proxy URL    http://[user:pass@]host:port: the downloads and the agent go through it
  --node PATH    the node binary to use (default: node on PATH; 22 or newer)
  --keys FILE    check the package with these release public keys (PEM) instead of
                 the server's, and pin them in the agent's home
OUTPOST_USAGE_EOF
}

say() { printf '%s\n' "$PROG: $*"; }
fail() { code=$1; shift; printf '%s\n' "$PROG: $*" >&2; exit "$code"; }
bad_usage() { printf '%s\n' "$PROG: $*" "run it with --help for the options" >&2; exit 2; }
have() { command -v "$1" >/dev/null 2>&1; }

# ---- options ------------------------------------------------------------------------
TOKEN=$(printenv OUTPOST_REGISTRATION_TOKEN || true)
NAME=
DIR=
TAGS=
SERVICE=no
REPLACE=no
PROXY=
NODE=
KEYS=
while [ "$#" -gt 0 ]; do
  case "$1" in
    --token | --name | --home | --tags | --proxy | --node | --keys)
      [ "$#" -ge 2 ] || bad_usage "$1 needs a value"
      case "$1" in
        --token) TOKEN=$2 ;;
        --name) NAME=$2 ;;
        --home) DIR=$2 ;;
        --tags) TAGS=$2 ;;
        --proxy) PROXY=$2 ;;
        --node) NODE=$2 ;;
        --keys) KEYS=$2 ;;
      esac
      shift 2
      ;;
    --service) SERVICE=yes; shift ;;
    --replace) REPLACE=yes; shift ;;
    -h | --help) usage; exit 0 ;;
    *) bad_usage "unknown option: $1" ;;
  esac
done
# The token goes to register alone, never to the agent that keeps running.
unset OUTPOST_REGISTRATION_TOKEN
[ -n "$TOKEN" ] || bad_usage "missing --token (or OUTPOST_REGISTRATION_TOKEN): make one in the web app or with POST /api/v1/registration-tokens"
[ -n "$NAME" ] || bad_usage "missing --name"
case "$NAME" in
  [!A-Za-z0-9]* | *[!A-Za-z0-9._-]*) bad_usage "invalid --name '$NAME': letters, digits, '.', '_' or '-', starting with a letter or digit" ;;
esac
case "$PROXY" in
  '' | http://*) ;;
  *) bad_usage "--proxy must be an http:// URL (http://[user:pass@]host:port)" ;;
esac
# The proxy as it may be shown: without its user and password.
PROXY_SHOWN=$(printf '%s\n' "$PROXY" | sed 's#//.*@#//#')
VIA=
[ -z "$PROXY" ] || VIA=" through the proxy $PROXY_SHOWN"

# Plain http would let anyone on the way swap the script, the keys and the package.
case "$SERVER" in
  https://*) ;;
  http://127.* | http://localhost | http://localhost:* | 'http://[::1]' | 'http://[::1]:'*) ;;
  *) fail 1 "this script was served by '$SERVER': only https:// (or http:// to this machine) is safe to install from" ;;
esac

# ---- what this machine must have ----------------------------------------------------
if [ -z "$NODE" ]; then
  NODE=$(command -v node 2>/dev/null || true)
  [ -n "$NODE" ] || fail 1 "node is not on PATH: install Node.js 22 or newer, or pass --node /path/to/node"
elif ! have "$NODE"; then
  fail 1 "--node $NODE is not an executable node"
else
  case "$NODE" in
    */*) ;;
    *) NODE=$(command -v "$NODE") ;;
  esac
fi
case "$NODE" in
  /*) ;;
  *) NODE="$(pwd)/$NODE" ;;
esac
NODE_VERSION=$("$NODE" -v </dev/null 2>/dev/null || true)
[ -n "$NODE_VERSION" ] || NODE_VERSION="of an unknown version"
"$NODE" -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 22 ? 0 : 1)' </dev/null >/dev/null 2>&1 ||
  fail 1 "$NODE is Node.js $NODE_VERSION; the agent needs Node.js 22 or newer: install it, or pass --node /path/to/node"
have tar || fail 1 "tar is not installed; the installer unpacks the agent with it"
if have curl; then DOWNLOADER=curl
elif have wget; then DOWNLOADER=wget
else fail 1 "neither curl nor wget is installed; the installer downloads the agent with one of them"
fi
if have sha256sum; then HASHER=sha256sum
elif have shasum; then HASHER=shasum
else fail 1 "neither sha256sum nor shasum is installed; the installer checks the package's sha256 with one of them"
fi

# Test hook (docs/agent-lifecycle.md): write the unit into this folder, run no systemctl.
UNIT_DIR=$(printenv OUTPOST_INSTALL_UNIT_DIR || true)
UNIT_HOOK=no
UNIT_NAME="outpost-agent-$NAME.service"
if [ "$SERVICE" = yes ]; then
  if [ -n "$UNIT_DIR" ]; then
    UNIT_HOOK=yes
  else
    have systemctl || fail 3 "--service installs a systemd unit, and this machine has no systemctl: start the agent without --service, or under your own supervisor"
    [ -d /run/systemd/system ] || fail 3 "--service installs a systemd unit, and systemd is not running on this machine (no /run/systemd/system): start the agent without --service, or under your own supervisor"
    [ "$(id -u)" = 0 ] || fail 1 "--service writes /etc/systemd/system/$UNIT_NAME: run the installer as root (... | sudo sh -s -- ...)"
    UNIT_DIR=/etc/systemd/system
  fi
  if [ -e "$UNIT_DIR/$UNIT_NAME" ] && [ "$REPLACE" = no ]; then
    fail 1 "$UNIT_DIR/$UNIT_NAME exists already: remove it (systemctl disable --now $UNIT_NAME), or pass --replace to take the name over"
  fi
fi

# ---- where it goes -------------------------------------------------------------------
if [ -z "$DIR" ]; then
  if [ "$(id -u)" = 0 ]; then
    DIR=/var/lib/outpost-agent
  else
    USER_HOME=$(printenv HOME || true)
    [ -n "$USER_HOME" ] || fail 1 "HOME is not set: pass --home DIR"
    DIR="$USER_HOME/.outpost-agent"
  fi
fi
case "$DIR" in
  /*) ;;
  *) DIR="$(pwd)/$DIR" ;;
esac
AGENT_HOME="$DIR/home"
VERSIONS="$DIR/versions"
[ ! -e "$AGENT_HOME/credential.json" ] ||
  fail 1 "$AGENT_HOME already holds a registered agent: install into another --home (and pass --replace to take over its name)"
if [ "$SERVICE" = yes ]; then
  # systemd reads these paths unquoted by a shell: keep them plain.
  for p in "$NODE" "$DIR"; do
    case "$p" in
      *[!A-Za-z0-9._/+@-]*) fail 1 "--service needs plain paths (letters, digits and . _ / + @ -), not '$p'" ;;
    esac
  done
fi

TMP=$(mktemp -d 2>/dev/null || mktemp -d -t outpost-install)
trap 'rm -rf "$TMP"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- download ------------------------------------------------------------------------
# Only this server, no redirects; with --proxy nothing goes around the proxy.
download() {
  if [ "$DOWNLOADER" = curl ]; then
    if [ -n "$PROXY" ]; then curl -fsS --noproxy '' --proxy "$PROXY" -o "$2" "$1"
    else curl -fsS -o "$2" "$1"
    fi
  elif [ -n "$PROXY" ]; then
    env https_proxy="$PROXY" http_proxy="$PROXY" no_proxy= NO_PROXY= wget -q --max-redirect=0 -O "$2" "$1"
  else
    wget -q --max-redirect=0 -O "$2" "$1"
  fi
}
fetch() {
  download "$2" "$3" </dev/null || fail 1 "cannot download $1 from $2$VIA$4"
}

fetch "the current agent version" "$SERVER/agent/v1/agent-versions/current/meta" "$TMP/meta.json" \
  " (has an agent version been uploaded? POST /api/v1/agent-versions)"
META=$("$NODE" -e '
  const m = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  if (typeof m.version !== "string" || !/^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.+-]*)?$/.test(m.version)) throw new Error("no version");
  if (typeof m.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(m.sha256)) throw new Error("no sha256");
  process.stdout.write(m.version + " " + m.sha256 + "\n");
' "$TMP/meta.json" </dev/null 2>/dev/null) || fail 1 "the server's answer about its current agent version is not {\"version\",\"sha256\"}"
VERSION=$(printf '%s\n' "$META" | cut -d ' ' -f 1)
SHA256=$(printf '%s\n' "$META" | cut -d ' ' -f 2)

if [ -n "$KEYS" ]; then
  cp "$KEYS" "$TMP/release-keys.pem" 2>/dev/null || fail 1 "cannot read --keys $KEYS"
  KEYS_FROM="--keys $KEYS"
else
  fetch "the release keys" "$SERVER/agent/v1/release-keys" "$TMP/release-keys.pem" ""
  KEYS_FROM="$SERVER"
fi

say "downloading outpost-agent $VERSION from $SERVER$VIA"
fetch "outpost-agent $VERSION" "$SERVER/agent/v1/agent-versions/$VERSION" "$TMP/package.tar.gz" ""

# ---- verify ---------------------------------------------------------------------------
sha256_of() {
  if [ "$HASHER" = sha256sum ]; then sum=$(sha256sum <"$1"); else sum=$(shasum -a 256 <"$1"); fi
  printf '%s\n' "$sum" | cut -d ' ' -f 1
}
ACTUAL=$(sha256_of "$TMP/package.tar.gz")
[ "$ACTUAL" = "$SHA256" ] ||
  fail 1 "the downloaded package's sha256 is $ACTUAL, not $SHA256 as the server said: refused (nothing was installed or registered)"

cat >"$TMP/verify.mjs" <<'OUTPOST_VERIFY_EOF'
@OUTPOST_VERIFY_PROGRAM@
OUTPOST_VERIFY_EOF
verify() { "$NODE" "$TMP/verify.mjs" "$1" "$2" "$TMP/release-keys.pem" "$VERSION" </dev/null; }
OUT=$(verify package "$TMP/package.tar.gz" 2>&1) ||
  fail 1 "$OUT (release keys from $KEYS_FROM); nothing was installed or registered"
say "$OUT (release keys from $KEYS_FROM)"

# ---- unpack next to any other version, then point DIR/current at it ---------------
TARGET="$VERSIONS/$VERSION"
mkdir -p "$VERSIONS"
if [ -d "$TARGET" ] && verify tree "$TARGET" >/dev/null 2>&1; then
  say "outpost-agent $VERSION is already unpacked in $TARGET (checked against its signature)"
else
  STAGE="$VERSIONS/.unpack-$VERSION-$$"
  rm -rf "$STAGE"
  mkdir "$STAGE"
  # node inflates (tar -z would need a gzip program too); tar unpacks.
  "$NODE" -e 'const fs = require("fs"); fs.writeFileSync(process.argv[2], require("zlib").gunzipSync(fs.readFileSync(process.argv[1])))' \
    "$TMP/package.tar.gz" "$TMP/package.tar" </dev/null || fail 1 "cannot inflate the package"
  tar -x -o -m -f "$TMP/package.tar" -C "$STAGE" </dev/null || fail 1 "tar cannot unpack the package into $STAGE"
  chmod -R u=rwX,go= "$STAGE" # the modes in a package are not signed: ours, whatever tar kept
  OUT=$(verify tree "$STAGE" 2>&1) || { rm -rf "$STAGE"; fail 1 "what tar unpacked is not the signed package: $OUT"; }
  rm -rf "$TARGET"
  mv "$STAGE" "$TARGET"
fi
# A symlink swapped in by rename, so an upgrade can switch it atomically (mv -T where
# mv has it; a first install has nothing to replace).
rm -f "$DIR/.current-$$"
ln -s "versions/$VERSION" "$DIR/.current-$$"
if [ ! -e "$DIR/current" ] && [ ! -L "$DIR/current" ]; then mv "$DIR/.current-$$" "$DIR/current"
elif mv -T "$DIR/.current-$$" "$DIR/current" 2>/dev/null; then :
else rm -f "$DIR/current" && mv "$DIR/.current-$$" "$DIR/current"
fi
AGENT="$DIR/current/bin/outpost-agent.mjs"

# ---- register --------------------------------------------------------------------------
mkdir -p "$AGENT_HOME"
set -- register --server "$SERVER" --name "$NAME" --home "$AGENT_HOME"
[ -z "$TAGS" ] || set -- "$@" --tags "$TAGS"
[ "$REPLACE" = no ] || set -- "$@" --replace
[ -z "$PROXY" ] || set -- "$@" --proxy "$PROXY"
OUTPOST_REGISTRATION_TOKEN=$TOKEN "$NODE" "$AGENT" "$@" </dev/null ||
  fail 1 "registration failed (see above); outpost-agent $VERSION is unpacked in $TARGET, nothing is registered"
if [ -n "$KEYS" ]; then
  # The operator's keys, not the server's, are the ones this agent will trust.
  cp "$TMP/release-keys.pem" "$AGENT_HOME/release-keys.pem"
  chmod 600 "$AGENT_HOME/release-keys.pem"
  say "pinned the release keys of $KEYS in $AGENT_HOME/release-keys.pem"
fi

# ---- run ---------------------------------------------------------------------------------
if [ "$SERVICE" = yes ]; then
  cat >"$UNIT_DIR/.$UNIT_NAME.$$" <<OUTPOST_UNIT_EOF
# Written by the Outpost installer ($SERVER/agent/install.sh).
[Unit]
Description=Outpost agent $NAME ($SERVER)
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
ExecStart=$NODE $AGENT run --home $AGENT_HOME
Restart=always
RestartSec=5
# Steps run detached and outlive the agent's own processes: a stop or restart signals
# the monitor only, which stops its worker; the next worker re-attaches to the steps.
KillMode=process

[Install]
WantedBy=multi-user.target
OUTPOST_UNIT_EOF
  chmod 644 "$UNIT_DIR/.$UNIT_NAME.$$"
  mv "$UNIT_DIR/.$UNIT_NAME.$$" "$UNIT_DIR/$UNIT_NAME"
  if [ "$UNIT_HOOK" = yes ]; then
    say "wrote $UNIT_DIR/$UNIT_NAME; OUTPOST_INSTALL_UNIT_DIR is set (a test hook), so systemctl was not run"
  else
    { systemctl daemon-reload && systemctl enable --now "$UNIT_NAME"; } </dev/null ||
      fail 1 "the agent is registered but its unit $UNIT_NAME did not start: see systemctl status $UNIT_NAME"
    say "agent $NAME runs as the systemd unit $UNIT_NAME (journalctl -u $UNIT_NAME)"
  fi
else
  nohup "$NODE" "$AGENT" run --home "$AGENT_HOME" </dev/null >>"$DIR/agent.log" 2>&1 &
  PID=$!
  printf '%s\n' "$PID" >"$DIR/agent.pid"
  sleep 2
  kill -0 "$PID" 2>/dev/null ||
    fail 1 "the agent is registered but exited at once; $DIR/agent.log ends with: $(tail -n 20 "$DIR/agent.log")"
  say "agent $NAME runs in the background (pid $PID, log $DIR/agent.log); to start it again: $NODE $AGENT run --home $AGENT_HOME"
fi
`;

// The server's origin as a single-quoted shell word.
export function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

export function renderInstallScript(server: string, verifyProgram: string): string {
  if (verifyProgram.split("\n").includes("OUTPOST_VERIFY_EOF")) throw new Error("the verify program contains its heredoc's end marker");
  return INSTALL_SCRIPT_TEMPLATE.replace("@OUTPOST_SERVER@", () => shellQuote(server)).replace("@OUTPOST_VERIFY_PROGRAM@", () => verifyProgram.replace(/\n$/, ""));
}
