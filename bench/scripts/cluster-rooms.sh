#!/usr/bin/env bash
# cluster-rooms.sh: the rooms x replicas table of docs/benchmarks.md
# ("Cluster: rooms and replicas"). For every room count and replica count
# it starts fresh servers (a real nats-server with JetStream and file
# storage when replicas > 1, and that many chatgate processes), runs
# chatbench's rooms scenario with 2 members per room, the two members of a
# room on different replicas, at RATE messages/s in total, then stops
# everything and prints one line per run. Every run's chatbench JSON
# reports, the gateways' logs and final /metrics, and the servers' samples
# (samples.txt: NATS memory MB, subscriptions, consumers, each gateway's RSS
# MB, every second) stay in OUT.
#
# Usage: bench/scripts/cluster-rooms.sh [OUT]        (default OUT: ./cluster-rooms-<time>)
#
# Settings (environment):
#   ROOMS="100 1000 4000 8000 20000"  room counts
#   REPLICAS="1 2 3"                  1 is the single node (no NATS)
#   RATE=2000                         messages per second over all rooms
#   DURATION=30s SETTLE=10s           chatbench's window and settle time
#   SIZE=64                           text bytes per message
#   MAX_CONNS_PER_BENCH=18000         connections per chatbench process (the
#                                     per-process open-file limit is 20,000)
#   MAX_CONNS_PER_GATEWAY=19000       a run that needs more per gateway is skipped
#   CHATGATE=./chatgate CHATBENCH=./chatbench   (make build)
#   NATS_SERVER=/tmp/nats-server      go build -o /tmp/nats-server github.com/nats-io/nats-server/v2
#   GATEWAY_CPUS= BENCH_CPUS= NATS_CPUS=        taskset CPU lists (empty: unpinned)
#   GATEWAY_FLAGS=                    extra chatgate flags
#
# Placement: chatbench puts member i in room i mod rooms and on URL
# i mod replicas, so the two members of room r are members r and r+rooms.
# They land on different replicas only when rooms is not a multiple of the
# replica count; each chatbench process's room count is raised by one until
# it is not (the line says how many rooms ran). Several chatbench processes
# split the rooms (each its own bench id, rooms and source addresses
# 127.0.0.x) so none needs more than MAX_CONNS_PER_BENCH connections.
set -euo pipefail

OUT=${1:-./cluster-rooms-$(date +%Y%m%d-%H%M%S)}
ROOMS=${ROOMS:-"100 1000 4000 8000 20000"}
REPLICAS=${REPLICAS:-"1 2 3"}
RATE=${RATE:-2000}
DURATION=${DURATION:-30s}
SETTLE=${SETTLE:-10s}
SIZE=${SIZE:-64}
MAX_CONNS_PER_BENCH=${MAX_CONNS_PER_BENCH:-18000}
MAX_CONNS_PER_GATEWAY=${MAX_CONNS_PER_GATEWAY:-19000}
CHATGATE=${CHATGATE:-./chatgate}
CHATBENCH=${CHATBENCH:-./chatbench}
NATS_SERVER=${NATS_SERVER:-/tmp/nats-server}
GATEWAY_FLAGS=${GATEWAY_FLAGS:-}

NATS_PORT=14222 NATS_MON=18222 WS_BASE=18300 ADMIN_BASE=19300

for bin in "$CHATGATE" "$CHATBENCH"; do
  [ -x "$bin" ] || { echo "no $bin: run make build (or set CHATGATE / CHATBENCH)" >&2; exit 2; }
done
for r in $REPLICAS; do
  if [ "$r" -gt 1 ] && [ ! -x "$NATS_SERVER" ]; then
    echo "no $NATS_SERVER: go build -o $NATS_SERVER github.com/nats-io/nats-server/v2" >&2; exit 2
  fi
done
command -v jq >/dev/null || { echo "jq is needed to read chatbench's JSON" >&2; exit 2; }
mkdir -p "$OUT"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
trap cleanup EXIT

pin() { # pin CPUS CMD... &: run CMD (in place of the subshell) under taskset when CPUS is set
  local cpus=$1; shift
  if [ -n "$cpus" ]; then exec taskset -c "$cpus" "$@"; else exec "$@"; fi
}

wait_url() { # wait_url URL: until it answers 200, at most 60 s
  for _ in $(seq 600); do
    if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for $1" >&2
  return 1
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

printf '%-7s %-8s %-7s %-11s %-8s %-8s %-8s %-12s %-11s %-9s %-9s %s\n' \
  rooms replicas benches delivered/s p50_ms p99_ms max_ms lost/dup/ooo nats_rss_mb nats_subs consumers gw_rss_mb | tee "$OUT/table.txt"

for rooms in $ROOMS; do
  for replicas in $REPLICAS; do
    run="$OUT/r${rooms}-x${replicas}"
    mkdir -p "$run"
    members=$((rooms * 2))
    if [ $((members / replicas)) -gt "$MAX_CONNS_PER_GATEWAY" ]; then
      echo "skip: $rooms rooms on $replicas replica(s) needs $((members / replicas)) connections per gateway (> $MAX_CONNS_PER_GATEWAY)" | tee -a "$OUT/table.txt"
      continue
    fi

    # NATS, fresh store per run.
    backplane=()
    if [ "$replicas" -gt 1 ]; then
      store=$(mktemp -d)
      pin "${NATS_CPUS:-}" "$NATS_SERVER" -js -a 127.0.0.1 -p $NATS_PORT -m $NATS_MON -sd "$store" >"$run/nats.log" 2>&1 &
      nats_pid=$!
      pids+=("$nats_pid")
      wait_url "http://127.0.0.1:$NATS_MON/healthz"
      backplane=(--backplane "nats://127.0.0.1:$NATS_PORT")
    fi

    # Gateways.
    urls=() gw_pids=()
    for i in $(seq 1 "$replicas"); do
      # shellcheck disable=SC2086 # GATEWAY_FLAGS is a list of flags
      pin "${GATEWAY_CPUS:-}" "$CHATGATE" --addr "127.0.0.1:$((WS_BASE + i))" --admin-addr "127.0.0.1:$((ADMIN_BASE + i))" \
        --node-id "gw$i" "${backplane[@]}" --log-format json --log-level warn \
        --max-conns 100000 --max-conns-per-ip 100000 --max-rooms-total 100000 \
        --handshake-rate 100000 --handshake-burst 100000 --send-rate 100000 --send-burst 100000 \
        --join-rate 100000 --join-burst 100000 $GATEWAY_FLAGS >"$run/gw$i.log" 2>&1 &
      gw_pids+=($!)
      pids+=($!)
      urls+=("ws://127.0.0.1:$((WS_BASE + i))/ws")
    done
    for i in $(seq 1 "$replicas"); do wait_url "http://127.0.0.1:$((ADMIN_BASE + i))/readyz"; done
    url_list=$(IFS=,; echo "${urls[*]}")

    # chatbench processes: split the rooms so none exceeds MAX_CONNS_PER_BENCH.
    benches=$(( (members + MAX_CONNS_PER_BENCH - 1) / MAX_CONNS_PER_BENCH ))
    rate=$(awk -v r="$RATE" -v n="$rooms" 'BEGIN { printf "%.6f", r / n }')
    bench_pids=() ran_rooms=0
    for b in $(seq 0 $((benches - 1))); do
      n=$(( rooms / benches + (b < rooms % benches ? 1 : 0) ))
      while [ "$replicas" -gt 1 ] && [ $((n % replicas)) -eq 0 ]; do n=$((n + 1)); done
      ran_rooms=$((ran_rooms + n))
      first=$((10 + b * 4))
      pin "${BENCH_CPUS:-}" "$CHATBENCH" rooms --url "$url_list" --conns $((n * 2)) --rooms "$n" \
        --senders 1 --rate "$rate" --size "$SIZE" --duration "$DURATION" --settle "$SETTLE" \
        --source-ips "127.0.0.$first-127.0.0.$((first + 3))" --max-loss 0 --max-dup 0 --max-out-of-order 0 \
        --progress off --json >"$run/bench$b.json" 2>"$run/bench$b.err" &
      bench_pids+=($!)
    done
    # While the benches run, every second: the NATS server's memory,
    # subscriptions and JetStream consumers, and each gateway's RSS.
    (
      while :; do
        if [ "$replicas" -gt 1 ]; then
          varz=$(curl -fsS "http://127.0.0.1:$NATS_MON/varz" 2>/dev/null) || varz='{}'
          jsz=$(curl -fsS "http://127.0.0.1:$NATS_MON/jsz" 2>/dev/null) || jsz='{}'
          printf '%s %s %s' "$(jq '(.mem // 0) / 1048576 | floor' <<<"$varz")" "$(jq '.subscriptions // 0' <<<"$varz")" "$(jq '.consumers // 0' <<<"$jsz")"
        else
          printf -- '- - -'
        fi
        for p in "${gw_pids[@]}"; do printf ' %s' $(( $(rss_kb "$p") / 1024 )); done
        echo
        sleep 1
      done
    ) >"$run/samples.txt" &
    sampler=$!
    for p in "${bench_pids[@]}"; do wait "$p" || true; done
    for i in $(seq 1 "$replicas"); do
      curl -fsS "http://127.0.0.1:$((ADMIN_BASE + i))/metrics" >"$run/gw$i.metrics" 2>/dev/null || true
    done
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true

    # The peaks over the run (NATS memory, subscriptions, consumers, gateways' RSS).
    read -r nats_rss nats_subs nats_consumers gw_rss < <(awk '
      { for (i = 1; i <= NF; i++) if ($i != "-") { v = $i + 0; if (!(i in peak) || v > peak[i]) peak[i] = v }
        if (NF > n) n = NF }
      END {
        for (i = 1; i <= 3; i++) printf "%s ", (i in peak ? peak[i] : "-")
        gw = ""; for (i = 4; i <= n; i++) gw = gw (i > 4 ? "/" : "") (i in peak ? peak[i] : "-")
        print (gw == "" ? "-" : gw)
      }' "$run/samples.txt")

    # One line: deliveries/s summed, the highest p50/p99/max of the
    # chatbench processes (each saw the same mix), correctness summed.
    line=$(jq -s -r --arg rooms "$ran_rooms" --arg replicas "$replicas" --arg benches "$benches" '
      def ms: . / 1000 | . * 100 | round / 100;
      [ $rooms, $replicas, $benches,
        (map(.messages.deliveries_per_s) | add | round),
        (map(.latency.p50_us) | max | ms), (map(.latency.p99_us) | max | ms), (map(.latency.max_us) | max | ms),
        "\(map(.correctness.lost) | add)/\(map(.correctness.duplicated) | add)/\(map(.correctness.out_of_order) | add)"
      ] | @tsv' "$run"/bench*.json 2>/dev/null || echo "$ran_rooms	$replicas	$benches	failed")
    # shellcheck disable=SC2086 # split the TSV into printf's arguments
    printf '%-7s %-8s %-7s %-11s %-8s %-8s %-8s %-12s %-11s %-9s %-9s %s\n' $line "$nats_rss" "$nats_subs" "$nats_consumers" "$gw_rss" | tee -a "$OUT/table.txt"

    cleanup
    if [ -n "${store:-}" ]; then rm -rf "$store"; store=; fi
  done
done
echo "reports in $OUT"
