# Sourced by bench.sh, scale.sh and smoke.sh: what a baseline's name means, and the Herald
# settings every lab run shares.
#   socketio       loadtest/baselines/socketio
#   nestjs         loadtest/baselines/nestjs, writes with one raw INSERT through pg
#   nestjs-prisma  loadtest/baselines/nestjs, writes through Prisma (the seed's ORM)
BASELINE_NAMES="socketio nestjs nestjs-prisma"
baseline_dir() { echo "loadtest/baselines/${1%-prisma}"; }
baseline_orm() { case "$1" in *-prisma) echo prisma ;; *) echo pg ;; esac; }
# Each baseline's table: the Socket.IO server's own default (sio_notifications), and for the
# NestJS ones <name>_notifications; the Prisma model names its table
# (nestjs/prisma/schema.prisma): nestjs_prisma_notifications.
baseline_table() { case "$1" in socketio) echo sio_notifications ;; *) echo "${1//-/_}_notifications" ;; esac; }
is_baseline() { [[ " $BASELINE_NAMES " == *" $1 "* ]]; }

# Herald's edge limits, turned off for the lab: the harness drives every node from loopback
# at rates and counts no real client reaches (thousands of sockets per address, tens of
# thousands of publishes per second per key). docs/performance.md lists them. Exported, so
# every Herald node a script starts inherits them; a caller's own values win.
export HERALD_LIMIT_EXEMPT="${HERALD_LIMIT_EXEMPT:-127.0.0.0/8}"
export HERALD_PUBLISH_RATE_PER_SEC="${HERALD_PUBLISH_RATE_PER_SEC:-10000000}"
export HERALD_PUBLISH_RATE_BURST="${HERALD_PUBLISH_RATE_BURST:-10000000}"
export HERALD_BROADCAST_RATE_PER_SEC="${HERALD_BROADCAST_RATE_PER_SEC:-1000}"
export HERALD_BROADCAST_RATE_BURST="${HERALD_BROADCAST_RATE_BURST:-1000}"
export HERALD_USER_API_RATE_PER_SEC="${HERALD_USER_API_RATE_PER_SEC:-10000000}"
export HERALD_USER_API_RATE_BURST="${HERALD_USER_API_RATE_BURST:-10000000}"
# The harness signs its own tokens (sub and exp only).
export HERALD_JWT_ALLOW_ANY_AUDIENCE="${HERALD_JWT_ALLOW_ANY_AUDIENCE:-true}"
export HERALD_JWT_ALLOW_ANY_ISSUER="${HERALD_JWT_ALLOW_ANY_ISSUER:-true}"
