"""How a background writer's flushes delay a WAL's fdatasync on this disk (not a test).

One thread appends 350 KB records to a "WAL" file, each followed by fdatasync (what a group
commit of 1,000 events does), while another writes 24 MiB files the way a seal does:
`whole` (write, then one fdatasync), `pieces` (fdatasync after every MiB), `paced` (the
same with a 4 ms pause per MiB) or `rate` (what the engine does while the WAL is busy:
fdatasync after every 256 KiB, at most 32 MiB/s). `grow` appends to a growing WAL file, `prealloc` to a
zero-filled one. Prints the WAL fdatasync latency percentiles.

    python3 benches/fsync_interference.py grow whole
    python3 benches/fsync_interference.py grow pieces
    python3 benches/fsync_interference.py grow whole idle
    python3 benches/fsync_interference.py grow rate
"""
import os, time, threading, sys
mode = sys.argv[1]  # grow | prealloc
bg = sys.argv[2]  # whole | pieces | paced | rate | rangewrite | none
# idle: the background writer's thread in the idle I/O class (ioprio_set), as the engine's
# background thread can put itself
prio = sys.argv[3] if len(sys.argv) > 3 else "normal"
stop = False
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
def background():
    if prio == "idle":
        # ioprio_set(IOPRIO_WHO_PROCESS, this thread, IOPRIO_CLASS_IDLE << 13)
        if libc.syscall(251, 1, threading.get_native_id(), 3 << 13) != 0:
            raise OSError(ctypes.get_errno(), "ioprio_set")
    i = 0
    buf = os.urandom(1 << 20)
    while not stop:
        fd = os.open(f"/tmp/fsx/bg{i%4}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        if bg == "rate":
            piece = buf[: 256 << 10]
            for _ in range(24 * 4):
                os.write(fd, piece); os.fdatasync(fd); time.sleep((256 << 10) / (32 << 20))
        for _ in range(0 if bg == "rate" else 24):
            os.write(fd, buf)
            if bg == "pieces": os.fdatasync(fd)
            if bg == "paced": os.fdatasync(fd); time.sleep(0.004)
            if bg == "rangewrite":
                # sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE): start writeback, no wait
                libc.syscall(277, fd, ctypes.c_long(0), ctypes.c_long(0), 2)
        os.fdatasync(fd); os.close(fd); i += 1
        time.sleep(0.2)
os.makedirs("/tmp/fsx", exist_ok=True)
path = "/tmp/fsx/wal"
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
if mode == "prealloc":
    z = bytes(1 << 20)
    for _ in range(128): os.write(fd, z)
    os.fdatasync(fd); os.lseek(fd, 0, 0)
t = threading.Thread(target=background)
if bg != "none": t.start()
rec = os.urandom(350_000)
lat = []
end = time.time() + 20
while time.time() < end:
    s = time.perf_counter(); os.write(fd, rec); os.fdatasync(fd); lat.append((time.perf_counter() - s) * 1e3)
    time.sleep(0.02)
stop = True
if bg != "none": t.join()
lat.sort()
print(mode, bg, prio, "n", len(lat), "p50 %.1f p90 %.1f p99 %.1f max %.1f ms" % (lat[len(lat)//2], lat[int(len(lat)*.9)], lat[int(len(lat)*.99)], lat[-1]))
