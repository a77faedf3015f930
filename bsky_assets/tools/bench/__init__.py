"""`bsky-assets bench`: throughput, quota use and memory, next to the seed's method.

Every figure comes from one invocation, on this machine, against the project's own servers (each
in its own process) and a real Postgres (a throw-away schema):

- P1 quota use: Perspective server enforcing a per-minute quota equal to the client's rate.
- P2 overhead: no quota, no latency; posts/s through perspective_labels, next to a bare
  google-api-python-client batch loop on the same server (the ceiling).
- P3 memory: peak RSS of each step of the graph, each run in its own process (getrusage).
- P4 database writes: label rows/s upserted through the client's COPY path.
- P5 LLM stage: OpenAI-compatible server adding latency and enforcing requests per minute.
- P8 export: the day just labelled to Parquet (label_exports in its own process; bench/export.py).
- Baseline: the seed's method (fixed 1.05 s sleep per 90-post batch, 50-row inserts each
  re-reading every stored uri and counting the table) on the same servers and database. Its fixed
  sleeps make a full day take hours, so it runs on a subset and is reported as a rate.
"""
