#!/usr/bin/env bash
#
# scripts/test.sh: the one test command, for people and CI alike.
#
# It installs what is missing (redis-server and chromium from Debian, MinIO
# built once from its Go module into the cache), starts a throwaway Redis and MinIO on
# free loopback ports, runs `go vet` and `go test -race` against them, and
# stops them again however the run ends. Integration tests find the servers
# through LIKENESS_TEST_* variables and, with LIKENESS_TEST_REQUIRE_INFRA=1,
# fail instead of skipping if they are missing.
#
# Usage:
#   scripts/test.sh                              vet and test every package
#   scripts/test.sh ./pkg/store/...              only these packages
#   scripts/test.sh -run TestDir -v ./pkg/store/ go test flags, then packages
#
# Arguments starting with "-" are go test flags (defaults: -race -count=1
# -timeout 14m; yours come later and win), the others are package patterns
# (default ./...), which go vet checks too.
#
# Environment:
#   LIKENESS_CACHE  where MinIO is built (default $XDG_CACHE_HOME/likeness,
#                   or ~/.cache/likeness)
#   LIKENESS_SCREENSHOTS  a directory: the dashboard's browser tests save
#                   screenshots of the run page there
#
# The exit status is go test's (or go vet's, if vet fails first).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

# go test flags that take a value as the next argument ("-run X"), so that
# X is not mistaken for a package.
value_flags=" run skip bench benchtime count cpu parallel timeout shuffle list
	coverprofile covermode coverpkg cpuprofile memprofile memprofilerate
	blockprofile blockprofilerate mutexprofile mutexprofilefraction trace
	outputdir o exec tags p fuzz fuzztime fuzzminimizetime fuzzcachedir
	ldflags gcflags asmflags mod modfile overlay pkgdir toolexec vet json "
flags=()
pkgs=()
while (($#)); do
	arg=$1
	shift
	case $arg in
	-args | --args)
		# Everything after -args goes to the test binaries.
		flags+=("$arg" "$@")
		break
		;;
	-*=* | --*=*) flags+=("$arg") ;;
	-*)
		flags+=("$arg")
		name=${arg#-}
		name=${name#-}
		if [[ $value_flags == *[[:space:]]"$name"[[:space:]]* ]] && (($#)); then
			flags+=("$1")
			shift
		fi
		;;
	*) pkgs+=("$arg") ;;
	esac
done
((${#pkgs[@]})) || pkgs=(./...)
# -args must come last, after the packages.
args_at=-1
for i in "${!flags[@]}"; do
	if [[ ${flags[i]} == -args || ${flags[i]} == --args ]]; then
		args_at=$i
		break
	fi
done
if ((args_at >= 0)); then
	test_args=("${flags[@]:0:args_at}" "${pkgs[@]}" "${flags[@]:args_at}")
else
	test_args=("${flags[@]}" "${pkgs[@]}")
fi

command -v go >/dev/null || infra_die "go not found: install Go first (see go.mod for the version)"
export CGO_ENABLED=1 # -race needs cgo
infra_ensure_cc
infra_ensure_redis
infra_ensure_minio
infra_ensure_chromium

infra_log "go vet ${pkgs[*]}"
go vet "${pkgs[@]}"

trap infra_down EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
infra_up

export LIKENESS_TEST_REDIS_ADDR=$INFRA_REDIS_ADDR
export LIKENESS_TEST_S3_ENDPOINT=$INFRA_S3_ENDPOINT
export LIKENESS_TEST_S3_ACCESS_KEY=$INFRA_S3_ACCESS_KEY
export LIKENESS_TEST_S3_SECRET_KEY=$INFRA_S3_SECRET_KEY
export LIKENESS_TEST_REQUIRE_INFRA=1

status=0
go test -race -count=1 -timeout 14m "${test_args[@]}" || status=$?
exit "$status"
