"""The disk's own fsync latency at the WAL's pace, with nothing else running (not a test).

Writes 360 KB (a group commit of 1,000 generated events) over a zero-filled 64 MiB file and
fdatasyncs it, RATE times a second for COUNT rounds (defaults: 30 a second for a minute, the
ack-latency figure's load), and prints the percentiles and how many fsyncs took over 5 and
10 ms. Run it just before or after `auditlog loadgen --rate 30000` to tell how much of an
acknowledgement tail the disk alone explains: on this VM two such minutes gave 2 and 28
fsyncs over 10 ms.

    python3 benches/fsync_probe.py [COUNT] [RATE] [DIR]
"""
import os
import sys
import time

count = int(sys.argv[1]) if len(sys.argv) > 1 else 1800
rate = float(sys.argv[2]) if len(sys.argv) > 2 else 30.0
directory = sys.argv[3] if len(sys.argv) > 3 else "/tmp"
path = os.path.join(directory, "auditlog-fsync-probe")
size = 64 << 20
fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
try:
    # Written over, like the WAL's recycled files: no block allocation per fsync.
    os.write(fd, bytes(size))
    os.fsync(fd)
    record = os.urandom(360_000)
    latencies = []
    offset = 0
    started = time.time()
    for i in range(count):
        delay = started + i / rate - time.time()
        if delay > 0:
            time.sleep(delay)
        if offset + len(record) > size:
            offset = 0
        os.pwrite(fd, record, offset)
        offset += len(record)
        begin = time.perf_counter()
        os.fdatasync(fd)
        latencies.append((time.perf_counter() - begin) * 1e3)
finally:
    os.close(fd)
    os.unlink(path)
latencies.sort()
n = len(latencies)
print(
    f"{n} fdatasyncs of 360 KB at {rate:g}/s: p50 {latencies[n // 2]:.2f} ms, "
    f"p90 {latencies[int(n * 0.9)]:.2f}, p99 {latencies[int(n * 0.99)]:.2f}, "
    f"max {latencies[-1]:.2f}; over 5 ms: {sum(l > 5 for l in latencies)}, "
    f"over 10 ms: {sum(l > 10 for l in latencies)}"
)
