#!/usr/bin/env python3
"""Puts or gets against etcd's v3 JSON gateway (/v3/kv/put, /v3/kv/range) over mutual TLS.

Used by scripts/compare.sh where etcd's own `benchmark` tool is not packaged (Debian ships only
`etcd` and `etcdctl`, and `etcdctl check perf` runs a fixed 60 s at a capped rate with 50/200/500/1000
clients and puts only). It runs CONCURRENCY connections, each with one request in flight (HTTP/1.1
keep-alive), for SECONDS, over KEYS keys of VALUE_BYTES bytes, and prints the same line as kvbench:
`put: N ops in S s = X ops/s, p50 A ms, p95 B ms, p99 C ms` (reads are linearizable, etcd's default,
the counterpart of a quorum read). It is a Python client: its own CPU use is reported beside its
figures by compare.sh, so that a saturated load generator can be told from a saturated server.

  etcd_load.py put|get|load ENDPOINTS CA CERT KEY [--concurrency 50] [--seconds 10] [--keys 10000]
               [--value-bytes 100]
"""
import argparse
import asyncio
import base64
import json
import random
import ssl
import time


def body(workload, key, value):
    doc = {"key": base64.b64encode(key).decode()}
    if workload != "get":
        doc["value"] = base64.b64encode(value).decode()
    return json.dumps(doc).encode()


async def connection(host, port, context, workload, keys, value, deadline, latencies, errors, indexes):
    reader, writer = await asyncio.open_connection(host, port, ssl=context)
    path = "/v3/kv/range" if workload == "get" else "/v3/kv/put"
    while time.monotonic() < deadline:
        if indexes is not None:
            if not indexes:
                break
            index = indexes.pop()
        else:
            index = random.randrange(keys)
        payload = body(workload, b"bench-%d" % index, value)
        request = (
            b"POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
            % (path.encode(), host.encode(), port, len(payload))
        ) + payload
        started = time.perf_counter()
        writer.write(request)
        status = await reader.readline()
        length = 0
        chunked = False
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, rest = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(rest.strip())
            elif name == b"transfer-encoding" and b"chunked" in rest.lower():
                chunked = True
        if chunked:
            while True:
                size = int((await reader.readline()).strip(), 16)
                await reader.readexactly(size + 2)
                if size == 0:
                    break
        else:
            await reader.readexactly(length)
        elapsed = time.perf_counter() - started
        if not status.startswith(b"HTTP/1.1 200"):
            errors.append(status)
        else:
            latencies.append(elapsed)
    writer.close()


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("workload", choices=["put", "get", "load"])
    parser.add_argument("endpoints")
    parser.add_argument("ca")
    parser.add_argument("cert")
    parser.add_argument("key")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--keys", type=int, default=10000)
    parser.add_argument("--value-bytes", type=int, default=100)
    args = parser.parse_args()
    context = ssl.create_default_context(cafile=args.ca)
    context.load_cert_chain(args.cert, args.key)
    context.check_hostname = False
    endpoints = [e.rsplit(":", 1) for e in args.endpoints.split(",")]
    value = b"x" * args.value_bytes
    latencies, errors = [], []
    indexes = list(range(args.keys)) if args.workload == "load" else None
    workload = "put" if args.workload == "load" else args.workload
    deadline = time.monotonic() + (3600 if indexes is not None else args.seconds)
    started = time.monotonic()
    await asyncio.gather(*[
        connection(endpoints[i % len(endpoints)][0], int(endpoints[i % len(endpoints)][1]), context, workload,
                   args.keys, value, deadline, latencies, errors, indexes)
        for i in range(args.concurrency)
    ])
    seconds = time.monotonic() - started
    latencies.sort()

    def pct(p):
        return 1000 * latencies[min(len(latencies) - 1, int(p * len(latencies)))] if latencies else 0.0

    print("%s: %d ops in %.1f s = %.0f ops/s, p50 %.2f ms, p95 %.2f ms, p99 %.2f ms%s" % (
        workload, len(latencies), seconds, len(latencies) / seconds, pct(0.50), pct(0.95), pct(0.99),
        ", %d errors (first: %r)" % (len(errors), errors[0]) if errors else ""))


asyncio.run(main())
