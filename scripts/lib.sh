# shellcheck shell=bash
#
# scripts/lib.sh: install, start and stop the real Redis and MinIO that
# likeness's tests and benchmarks run against. Sourced by scripts/test.sh
# (and scripts/bench.sh); it only defines functions and constants.
#
# Typical use:
#
#   source scripts/lib.sh
#   infra_ensure_redis; infra_ensure_minio
#   trap infra_down EXIT; trap 'exit 130' INT; trap 'exit 143' TERM
#   infra_up                      # sets INFRA_REDIS_ADDR, INFRA_S3_* below
#
# Everything listens on 127.0.0.1 only, on free ports picked at random in
# 20000-40000, so several runs can share a machine. MinIO is built once from
# its Go module into the cache directory:
#
#   ${LIKENESS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/likeness}/bin/minio
#
# with bin/minio.version recording the module version it was built from.

INFRA_MINIO_MODULE=github.com/minio/minio
INFRA_MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c

# Test credentials for the throwaway MinIO (never real secrets).
INFRA_S3_ACCESS_KEY=likeness-test
INFRA_S3_SECRET_KEY=likeness-test-secret

# Set by infra_up.
INFRA_DIR=""         # temp dir holding data and logs; removed by infra_down
INFRA_PIDS=()        # servers to stop
INFRA_REDIS_ADDR=""  # 127.0.0.1:port
INFRA_S3_ENDPOINT="" # 127.0.0.1:port
INFRA_USED_PORTS=" "

infra_log() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
infra_die() {
	infra_log "error: $*"
	exit 1
}

infra_cache_dir() { printf '%s\n' "${LIKENESS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/likeness}"; }

# infra_as_root CMD...: run CMD as root, through sudo when not root already.
infra_as_root() {
	if [[ $EUID -eq 0 ]]; then
		"$@"
	elif command -v sudo >/dev/null; then
		sudo "$@"
	else
		infra_die "need root to run: $* (install it yourself, or install sudo)"
	fi
}

# infra_apt_install PKG...: install Debian packages, updating the index first.
infra_apt_install() {
	command -v apt-get >/dev/null || infra_die "apt-get not found: install $* yourself"
	infra_log "installing $* with apt-get"
	local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -qq)
	infra_as_root "${apt[@]}" update
	infra_as_root "${apt[@]}" install -y "$@" >/dev/null
}

# infra_ensure_redis: redis-server (and redis-cli) from Debian.
infra_ensure_redis() {
	command -v redis-server >/dev/null || infra_apt_install redis-server
}

# infra_ensure_chromium: Debian's chromium for the dashboard's browser
# tests (chromedp drives /usr/bin/chromium; no browser is ever downloaded),
# with fonts so screenshots have readable text.
infra_ensure_chromium() {
	[[ -x /usr/bin/chromium ]] || infra_apt_install --no-install-recommends chromium fonts-liberation
}

# infra_ensure_cc: a C compiler, which go test -race needs (cgo).
infra_ensure_cc() {
	local cc
	cc=$(go env CC)
	command -v "${cc%% *}" >/dev/null || infra_apt_install gcc libc6-dev
}

# infra_minio_bin: path of the cached MinIO binary.
infra_minio_bin() { printf '%s/bin/minio\n' "$(infra_cache_dir)"; }

# infra_ensure_minio: build the pinned MinIO into the cache unless it is
# there already. The build takes minutes, once; a lock keeps concurrent runs
# from building it twice.
infra_ensure_minio() {
	local bin stamp lock fd
	bin=$(infra_minio_bin)
	stamp=$bin.version
	[[ -x $bin && $(cat "$stamp" 2>/dev/null) == "$INFRA_MINIO_VERSION" ]] && return 0

	mkdir -p "${bin%/*}"
	lock=${bin%/*}/.minio.lock
	exec {fd}>"$lock"
	if command -v flock >/dev/null; then
		flock "$fd"
	fi
	# Built meanwhile by another run, or built without a stamp: trust the
	# module version the binary itself records.
	if [[ -x $bin ]] && go version -m "$bin" 2>/dev/null |
		awk -v m="$INFRA_MINIO_MODULE" -v v="$INFRA_MINIO_VERSION" '$1 == "mod" && $2 == m && $3 == v { ok = 1 } END { exit !ok }'; then
		printf '%s\n' "$INFRA_MINIO_VERSION" >"$stamp.tmp" && mv "$stamp.tmp" "$stamp"
	else
		infra_log "building MinIO $INFRA_MINIO_VERSION into ${bin%/*} (several minutes, only once)"
		rm -f "$stamp"
		(cd "${bin%/*}" && GOBIN=${bin%/*} GOWORK=off GOFLAGS=-buildvcs=false \
			go install "$INFRA_MINIO_MODULE@$INFRA_MINIO_VERSION") ||
			infra_die "building MinIO failed"
		printf '%s\n' "$INFRA_MINIO_VERSION" >"$stamp.tmp" && mv "$stamp.tmp" "$stamp"
	fi
	exec {fd}>&-
}

# infra_pick_port VAR: set VAR to a loopback port nothing listens on, and
# that this run has not handed out yet.
infra_pick_port() {
	local -n _port=$1
	local p i
	for ((i = 0; i < 200; i++)); do
		p=$((20000 + RANDOM % 20001))
		[[ $INFRA_USED_PORTS == *" $p "* ]] && continue
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			INFRA_USED_PORTS+="$p "
			_port=$p
			return 0
		fi
	done
	infra_die "no free port found in 20000-40000"
}

infra_redis_ready() {
	local port=$1 reply=""
	if command -v redis-cli >/dev/null; then
		reply=$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null) || return 1
		[[ $reply == PONG ]]
	else
		(
			exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
			printf 'PING\r\n' >&3
			read -r -t 2 reply <&3 || exit 1
			[[ $reply == +PONG* ]]
		) 2>/dev/null
	fi
}

infra_minio_ready() {
	local port=$1 status=""
	if command -v curl >/dev/null; then
		curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$port/minio/health/live"
	else
		(
			exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
			printf 'GET /minio/health/live HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
			read -r -t 2 _ status _ <&3 || exit 1
			[[ $status == 200 ]]
		) 2>/dev/null
	fi
}

# infra_wait NAME PID LOG TIMEOUT CHECK...: wait until CHECK succeeds.
# Returns 0 when ready, 2 when the server exited because its port was taken
# meanwhile (the caller retries on another port); dies on anything else.
infra_wait() {
	local name=$1 pid=$2 log=$3 timeout=$4
	shift 4
	local deadline=$((SECONDS + timeout))
	until "$@"; do
		if ! kill -0 "$pid" 2>/dev/null; then
			wait "$pid" 2>/dev/null || true
			grep -qi 'address already in use' "$log" && return 2
			infra_log "$name exited during startup; last lines of $log:"
			tail -n 40 "$log" >&2
			infra_die "$name did not start"
		fi
		if ((SECONDS >= deadline)); then
			infra_log "$name not ready after ${timeout}s; last lines of $log:"
			tail -n 40 "$log" >&2
			infra_die "$name did not start"
		fi
		sleep 0.1
	done
}

infra_start_redis() {
	local port log rc attempt
	mkdir -p "$INFRA_DIR/redis"
	log=$INFRA_DIR/redis.log
	for attempt in 1 2 3 4 5; do
		infra_pick_port port
		# 256 databases: internal/testenv.RedisDB gives each test its own.
		redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
			--databases 256 \
			--dir "$INFRA_DIR/redis" >"$log" 2>&1 &
		INFRA_PIDS+=("$!")
		rc=0
		infra_wait redis-server "$!" "$log" 30 infra_redis_ready "$port" || rc=$?
		if ((rc == 0)); then
			INFRA_REDIS_ADDR=127.0.0.1:$port
			return 0
		fi
		infra_log "redis-server: port $port taken (attempt $attempt), trying another"
	done
	infra_die "redis-server: no port worked"
}

infra_start_minio() {
	local port console log rc attempt
	mkdir -p "$INFRA_DIR/minio"
	log=$INFRA_DIR/minio.log
	for attempt in 1 2 3 4 5; do
		infra_pick_port port
		infra_pick_port console
		MINIO_ROOT_USER=$INFRA_S3_ACCESS_KEY MINIO_ROOT_PASSWORD=$INFRA_S3_SECRET_KEY \
			MINIO_UPDATE=off MINIO_CALLHOME_ENABLE=off \
			"$(infra_minio_bin)" server "$INFRA_DIR/minio" \
			--address "127.0.0.1:$port" --console-address "127.0.0.1:$console" >"$log" 2>&1 &
		INFRA_PIDS+=("$!")
		rc=0
		infra_wait minio "$!" "$log" 60 infra_minio_ready "$port" || rc=$?
		if ((rc == 0)); then
			INFRA_S3_ENDPOINT=127.0.0.1:$port
			return 0
		fi
		infra_log "minio: port $port or $console taken (attempt $attempt), trying another"
	done
	infra_die "minio: no port worked"
}

# infra_up: start Redis and MinIO in a fresh temp dir. Call infra_ensure_*
# first, and trap infra_down before calling it.
infra_up() {
	INFRA_DIR=$(mktemp -d "${TMPDIR:-/tmp}/likeness-infra.XXXXXX")
	infra_start_redis
	infra_start_minio
	infra_log "redis on $INFRA_REDIS_ADDR, minio on $INFRA_S3_ENDPOINT (logs in $INFRA_DIR)"
}

# infra_down: stop the servers and remove the temp dir. Safe to call twice
# and from a trap.
infra_down() {
	local pid i
	for pid in "${INFRA_PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${INFRA_PIDS[@]}"; do
		for ((i = 0; i < 100; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	INFRA_PIDS=()
	if [[ -n $INFRA_DIR ]]; then
		rm -rf "$INFRA_DIR"
		INFRA_DIR=""
	fi
}
