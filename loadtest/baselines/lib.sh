# Sourced by bench.sh, scale.sh and smoke.sh: what a baseline's name means.
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
