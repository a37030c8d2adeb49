#!/bin/sh
# Container entrypoint: prepare the Kubo repo in the state volume (/data), start Kubo with
# pubsub, then run start_worker in the mode the environment asks for. With arguments, runs
# them instead of a worker (e.g. `gridd ipfs status`) once Kubo is up.
#
#   GRIDD_MODE            tree | compute | view (the web view of a tangle) (default tree)
#   GRIDD_BOOTSTRAP       multiaddrs to keep connected, comma/space separated; or
#   GRIDD_BOOTSTRAP_ID    the bootstrap peer's id, at /dns4/$GRIDD_BOOTSTRAP_HOST/tcp/4001
#   GRIDD_BOOTSTRAP_HOSTNAME  the host name of the bootstrap peer (e.g. gridd-tree-0): only it
#                         uses GRIDD_IPFS_IDENTITY and GRIDD_CREATE_GENESIS
#   GRIDD_IPFS_IDENTITY   fixed Kubo identity (python -m gridd.ipfs.repo_setup keygen)
#   GRIDD_NETWORK         private (no public bootstrap/routers) | public  (default public)
#   GRIDD_METRICS_PORT    Prometheus metrics port                         (default 9100)
# tree mode:
#   GRIDD_GENESIS         the tangle to join, or:
#   GRIDD_CREATE_GENESIS  a builtin model (digits_mlp): create a tangle at first start and
#                         keep its id in /data/genesis (later starts join that one)
#   GRIDD_GENESIS_FILE    a file on a volume the lab's peers share: the creator writes the id
#                         there, the others wait for it (GRIDD_GENESIS_WAIT seconds, 600)
#   GRIDD_DATA            this peer's .npz, or:
#   GRIDD_EXAMPLE_DATA    I/N: part I of the digits data split N ways (I may be "ordinal": the
#                         number ending the host name, as a StatefulSet names its pods)
#   TRAINING_INTERVAL, ACTIVE_QUOTA, NUM_OF_TIPS, ... (the IPFS Learning Tangle's names),
#   or GRIDD_OBSERVER=1 to follow without data
# compute mode: GRIDD_SLOTS (default 1), GRIDD_ACCEPT_FROM (peer ids, space separated)
# view mode: the tree mode's genesis variables, GRIDD_WEB_PORT (default 9000)
set -eu
log() { echo "gridd-entrypoint: $*" >&2; }

# One Secret and ConfigMap for a whole StatefulSet: only the pod named GRIDD_BOOTSTRAP_HOSTNAME
# takes the fixed identity and creates the tangle; everyone's list names that peer.
if [ -n "${GRIDD_BOOTSTRAP_HOSTNAME:-}" ] && [ "$(hostname)" != "$GRIDD_BOOTSTRAP_HOSTNAME" ]; then
  unset GRIDD_IPFS_IDENTITY GRIDD_CREATE_GENESIS
fi
if [ -z "${GRIDD_BOOTSTRAP:-}" ] && [ -n "${GRIDD_BOOTSTRAP_ID:-}" ]; then
  export GRIDD_BOOTSTRAP="/dns4/${GRIDD_BOOTSTRAP_HOST:-gridd-bootstrap}/tcp/4001/p2p/$GRIDD_BOOTSTRAP_ID"
fi
python -m gridd.ipfs.repo_setup container
gridd ipfs start
mode="${GRIDD_MODE:-tree}"
metrics="${GRIDD_METRICS_PORT:-9100}"
[ "$#" -gt 0 ] && exec "$@"

case "$mode" in
  compute)
    set -- --compute --metrics-port "$metrics" --slots "${GRIDD_SLOTS:-1}"
    for peer in ${GRIDD_ACCEPT_FROM:-}; do set -- "$@" --accept-from "$peer"; done
    exec start_worker "$@" ;;
  tree|view) ;;
  *) log "GRIDD_MODE must be tree, compute or view, not '$mode'"; exit 2 ;;
esac

publish_genesis() {  # atomically, so a reader never sees half an id
  echo "$2" > "$1.tmp" && mv "$1.tmp" "$1"
}
genesis="${GRIDD_GENESIS:-}"
if [ -z "$genesis" ] && [ -s /data/genesis ]; then
  genesis="$(cat /data/genesis)"
fi
if [ -z "$genesis" ] && [ -n "${GRIDD_CREATE_GENESIS:-}" ]; then
  genesis="$(gridd genesis --model "$GRIDD_CREATE_GENESIS")"
  publish_genesis /data/genesis "$genesis"
  log "created tangle $genesis (kept in /data/genesis)"
fi
file="${GRIDD_GENESIS_FILE:-}"
if [ -n "$file" ]; then
  if [ -n "$genesis" ]; then
    publish_genesis "$file" "$genesis"
  else  # a peer of a lab whose bootstrap peer creates the tangle: wait for its id
    waited=0
    while [ ! -s "$file" ] && [ "$waited" -lt "${GRIDD_GENESIS_WAIT:-600}" ]; do
      sleep 1; waited=$((waited + 1))
    done
    [ -s "$file" ] && genesis="$(cat "$file")"
  fi
fi
[ -n "$genesis" ] || { log "tree mode needs GRIDD_GENESIS (or GRIDD_CREATE_GENESIS)"; exit 2; }

if [ "$mode" = view ]; then  # the web view of the tangle (no training), on all interfaces
  exec gridd view --genesis "$genesis" --web-host 0.0.0.0 --web-port "${GRIDD_WEB_PORT:-9000}"
fi
set -- --tree --genesis "$genesis" --metrics-port "$metrics"
if [ -n "${GRIDD_DATA:-}" ]; then
  set -- "$@" --data "$GRIDD_DATA"
elif [ -n "${GRIDD_EXAMPLE_DATA:-}" ]; then
  part="${GRIDD_EXAMPLE_DATA%/*}"; parts="${GRIDD_EXAMPLE_DATA#*/}"
  if [ "$part" = ordinal ]; then part="$(hostname | sed -n 's/.*-\([0-9][0-9]*\)$/\1/p')"; fi
  case "$part$parts" in *[!0-9]*|"") log "GRIDD_EXAMPLE_DATA must be I/N, got '$GRIDD_EXAMPLE_DATA'"; exit 2 ;; esac
  [ "$part" -lt "$parts" ] || { log "GRIDD_EXAMPLE_DATA: part $part of $parts does not exist"; exit 2; }
  if [ ! -s "/data/example/peer$part.npz" ]; then
    gridd example-data --peers "$parts" --out /data/example >/dev/null
  fi
  set -- "$@" --data "/data/example/peer$part.npz"
elif [ "${GRIDD_OBSERVER:-0}" = 1 ]; then
  set -- "$@" --observer
else
  log "tree mode needs GRIDD_DATA, GRIDD_EXAMPLE_DATA or GRIDD_OBSERVER=1"; exit 2
fi
exec start_worker "$@"
