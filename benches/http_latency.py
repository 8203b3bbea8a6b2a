"""Round-trip latency of GET requests on one kept-alive HTTP connection: 5 warm-up and 60 timed
requests per path, p50 and worst (p99 of 60) in ms. Standard library only.

    python3 benches/http_latency.py 127.0.0.1 7795 "$AUDITLOG_TOKEN" \
        "/v1/events?tenant=acct_0924&action=stop&resource_type=pod&since=7d&limit=50" "/healthz"
"""
import http.client, time, sys, json
host, port, token = sys.argv[1], int(sys.argv[2]), sys.argv[3]
paths = sys.argv[4:]
conn = http.client.HTTPConnection(host, port)
hdr = {"Authorization": "Bearer " + token}
for path in paths:
    samples = []
    for i in range(65):
        t = time.perf_counter()
        conn.request("GET", path, headers=hdr)
        r = conn.getresponse(); body = r.read()
        dt = (time.perf_counter() - t) * 1000
        if r.status != 200:
            print("status", r.status, body[:200]); break
        if i >= 5: samples.append(dt)
    samples.sort()
    if samples:
        p = lambda q: samples[min(len(samples)-1, int(len(samples)*q))]
        print(f"{path[:90]:90s} p50 {p(0.5):7.2f} ms  p99 {samples[-1]:7.2f} ms  bytes {len(body)}")
