#!/usr/bin/env bash
#
# scripts/bench.sh: run likeness's benchmarks against a throwaway real Redis
# and MinIO, exactly as scripts/test.sh runs the tests.
#
# It installs what is missing (redis-server from Debian, MinIO built once
# from its Go module into the cache), starts Redis and MinIO on free
# loopback ports, builds the likeness binary once into a temp dir, and runs
# `likeness bench SCENARIO` with LIKENESS_REDIS_URL and LIKENESS_S3_* set.
# The bench command starts its own `likeness sim-provider` (on a free
# loopback port) and `likeness worker` processes from that binary, and
# stops them however it ends; this script stops Redis and MinIO.
#
# The chaos scenario brings its own Redis and MinIO (it kills and restarts
# them): for it this script starts neither and passes the cached MinIO
# binary with --minio.
#
# Usage:
#   scripts/bench.sh limits|makespan|overhead|chaos [likeness bench flags]
#   scripts/bench.sh all [likeness bench flags]   limits, makespan, overhead in sequence
#   scripts/bench.sh sentinel [likeness bench flags]
#       limits against a Redis Sentinel set (master, replica, three
#       sentinels, started here too), failed over midway
#   scripts/bench.sh scale [likeness bench flags]
#       a 100,000-task run: submit time, Redis bytes per queued and
#       finished task, and the fan-in's time, peak RSS and largest page
#
# Progress goes to stderr; each scenario prints one JSON line on stdout.
# The exit status is likeness bench's (0: targets met, 1: a target missed,
# 2: bad input, 3: infrastructure); for `all`, the worst of the three.
#
# The throwaway Redis and MinIO keep their data in RAM (/dev/shm) when the
# machine has it: the benchmarks measure likeness, not how fast the VM's
# disk syncs (MinIO writes each object's metadata with O_DSYNC, which on
# this VM costs twice the CPU of the PUT itself; docs/benchmarks.md has the
# figures on both). LIKENESS_BENCH_TMP=/tmp measures with them on disk.
#
# Environment:
#   LIKENESS_CACHE      where MinIO is built (default $XDG_CACHE_HOME/likeness,
#                       or ~/.cache/likeness)
#   LIKENESS_BENCH_TMP  where the servers keep their data (default /dev/shm
#                       when it is a writable directory, else $TMPDIR or /tmp)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

usage() {
	printf 'usage: %s limits|makespan|overhead|chaos|sentinel|scale|all [likeness bench flags]\n' "${0##*/}" >&2
	exit 2
}
(($#)) || usage
scenario=$1
shift
case $scenario in
limits | makespan | overhead | chaos | sentinel | scale) scenarios=("$scenario") ;;
all) scenarios=(limits makespan overhead) ;;
-h | --help) usage ;;
*)
	infra_log "unknown scenario: $scenario"
	usage
	;;
esac

command -v go >/dev/null || infra_die "go not found: install Go first (see go.mod for the version)"
infra_ensure_redis
infra_ensure_minio
if [[ $scenario == sentinel ]]; then
	infra_ensure_redis_ha
fi

BENCH_BIN_DIR=""
cleanup() {
	infra_down
	if [[ -n $BENCH_BIN_DIR ]]; then
		rm -rf "$BENCH_BIN_DIR"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

BENCH_BIN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/likeness-bench-bin.XXXXXX")
infra_log "building likeness into $BENCH_BIN_DIR"
go build -o "$BENCH_BIN_DIR/likeness" ./cmd/likeness

if [[ $scenario == chaos ]]; then
	infra_log "likeness bench chaos $*"
	status=0
	"$BENCH_BIN_DIR/likeness" bench chaos --minio "$(infra_minio_bin)" --redis-server "$(command -v redis-server)" "$@" || status=$?
	exit "$status"
fi

bench_tmp=${LIKENESS_BENCH_TMP:-}
if [[ -z $bench_tmp && -d /dev/shm && -w /dev/shm ]]; then
	bench_tmp=/dev/shm
fi
if [[ -n $bench_tmp ]]; then
	export TMPDIR=$bench_tmp
fi
infra_log "redis and minio data under ${TMPDIR:-/tmp}"
infra_up

export LIKENESS_REDIS_URL=redis://$INFRA_REDIS_ADDR/0
if [[ $scenario == sentinel ]]; then
	infra_start_sentinel_set
	infra_sentinel_wait_ready
	export LIKENESS_REDIS_URL=$INFRA_SENTINEL_URL
fi
export LIKENESS_S3_ENDPOINT=$INFRA_S3_ENDPOINT
export LIKENESS_S3_ACCESS_KEY=$INFRA_S3_ACCESS_KEY
export LIKENESS_S3_SECRET_KEY=$INFRA_S3_SECRET_KEY
export LIKENESS_S3_BUCKET=likeness
export LIKENESS_S3_SECURE=false

worst=0
for s in "${scenarios[@]}"; do
	infra_log "likeness bench $s $*"
	status=0
	"$BENCH_BIN_DIR/likeness" bench "$s" "$@" || status=$?
	if ((status > worst)); then
		worst=$status
	fi
	# Infrastructure trouble or bad flags will not improve for the next one.
	if ((status >= 2)); then
		break
	fi
done
exit "$worst"
