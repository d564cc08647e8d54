#!/usr/bin/env bash
# bench/pgo.sh: refresh cmd/sluice/default.pgo, the CPU profile `go build`
# uses for profile-guided optimisation of the sluice binary (-pgo=auto:
# `go build ./cmd/sluice`, `go run ./cmd/sluice` and bench/run.sh pick it
# up; `go test` of other packages does not).
#
# Usage: bench/pgo.sh [SECONDS_PER_BENCHMARK=5]
#
# The profile is of the in-process benchmarks of bench/run.sh's profiles
# a, b and c on the fast engine (internal/gateway BenchmarkServeFast and
# BenchmarkServeFastPlugins: client, fast server, dataPlane.Serve with the
# plugins, fast upstream client, origin), one CPU. Most of its samples are
# system calls and the in-process client and origin; what matters to the
# compiler is which of Sluice's calls are hot, and those are the request
# path's. Refresh it after changes to that path; a stale
# profile only loses some of the gain (the compiler matches functions by
# name and ignores what no longer exists). docs/benchmarks.md ("Profile-
# guided build") has the measurement that justified it.
set -euo pipefail
SECS=${1:-5}
REPO=$(cd "$(dirname "$0")/.." && pwd)
T=$(mktemp -d /tmp/sluice-pgo.XXXX)
trap 'rm -rf "$T"' EXIT
cd "$REPO"
echo "pgo: profiling BenchmarkServeFast and BenchmarkServeFastPlugins (${SECS}s each)" >&2
go test -run '^$' -bench '^(BenchmarkServeFast|BenchmarkServeFastPlugins)$' -benchtime "${SECS}s" -cpu 1 \
	-cpuprofile "$T/cpu.pprof" -o "$T/gateway.test" ./internal/gateway/ >&2
# A benchmark name that no longer matches makes go test succeed with an
# almost empty profile: refuse it rather than replace a good one.
size=$(wc -c <"$T/cpu.pprof")
if [ "$size" -lt 8000 ] || ! go tool pprof -top "$T/cpu.pprof" 2>/dev/null | grep -q 'engine/fast'; then
	echo "pgo: the profile ($size bytes) does not cover the fast engine; default.pgo left as it is" >&2
	exit 1
fi
cp "$T/cpu.pprof" cmd/sluice/default.pgo
echo "pgo: wrote cmd/sluice/default.pgo ($(wc -c <cmd/sluice/default.pgo) bytes)" >&2
