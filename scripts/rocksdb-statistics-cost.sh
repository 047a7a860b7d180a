#!/usr/bin/env bash
# What RocksDB's statistics (rocksdb_options_enable_statistics, which RocksDBStore turns on for the
# quorumkv_rocksdb_*_bytes_total counters) cost on the put path: the same librocksdb, the same
# options as RocksDBStore (write-thread adaptive yield off), PUTS puts of VALUE_BYTES bytes with
# sync off (the CPU cost alone: an fsync per write would hide it), with and without statistics,
# ROUNDS rounds alternating. Prints puts per second of each round and the median of each.
#
#   scripts/rocksdb-statistics-cost.sh [PUTS] [VALUE_BYTES] [ROUNDS]
set -euo pipefail
puts=${1:-200000}
value=${2:-100}
rounds=${3:-5}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/cost.c" <<'C'
#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    const char *path = argv[1];
    int statistics = atoi(argv[2]);
    long puts = atol(argv[3]);
    int valueBytes = atoi(argv[4]);
    rocksdb_options_t *options = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(options, 1);
    rocksdb_options_set_enable_write_thread_adaptive_yield(options, 0);
    if (statistics) rocksdb_options_enable_statistics(options);
    char *error = NULL;
    rocksdb_t *db = rocksdb_open(options, path, &error);
    if (error) { fprintf(stderr, "%s\n", error); return 1; }
    rocksdb_writeoptions_t *write = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(write, 0);
    char *value = malloc(valueBytes);
    memset(value, 'v', valueBytes);
    char key[32];
    double start = now();
    for (long i = 0; i < puts; i++) {
        int length = snprintf(key, sizeof key, "key-%ld", i);
        rocksdb_put(db, write, key, length, value, valueBytes, &error);
        if (error) { fprintf(stderr, "%s\n", error); return 1; }
    }
    printf("%.0f\n", puts / (now() - start));
    rocksdb_close(db);
    return 0;
}
C
cc -O2 -o "$work/cost" "$work/cost.c" -lrocksdb
off=()
on=()
for round in $(seq 1 "$rounds"); do
    rm -rf "$work/db"; off+=("$("$work/cost" "$work/db" 0 "$puts" "$value")")
    rm -rf "$work/db"; on+=("$("$work/cost" "$work/db" 1 "$puts" "$value")")
    echo "round $round: without statistics ${off[-1]} puts/s, with ${on[-1]} puts/s"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
m_off=$(median "${off[@]}")
m_on=$(median "${on[@]}")
echo "median: without statistics $m_off puts/s, with $m_on puts/s ($(awk -v a="$m_off" -v b="$m_on" 'BEGIN {printf "%+.1f", (b - a) / a * 100}') %)"
