# gunicorn settings for the benchmark, following gunicorn's own production guidance.
# The harness (bench/run) sets BENCH_BIND, BENCH_CORES (CPUs the server is pinned to) and
# BENCH_WORKER_CLASS (sync or gthread).
import os

bind = os.environ.get("BENCH_BIND", "127.0.0.1:8000")
cores = int(os.environ.get("BENCH_CORES", "1"))

# "Design > How Many Workers?": "We recommend (2 x $num_cores) + 1 as the number of workers
# to start off with."
workers = 2 * cores + 1

worker_class = os.environ.get("BENCH_WORKER_CLASS", "sync")
if worker_class == "gthread":
    # Settings > threads: "A positive integer generally in the 2-4 x $(NUM_CORES) range."
    # We take the top of that range, per worker.
    threads = 4 * cores

# Defaults kept on purpose (documented production defaults): backlog 2048, timeout 30 s,
# graceful_timeout 30 s (SIGTERM = graceful shutdown of the workers), keepalive 2 s (gthread
# only; sync workers close the connection after each response). No access log, which is
# gunicorn's default (accesslog = None); errors go to stderr.
accesslog = None
errorlog = "-"
loglevel = "warning"
chdir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "flask")
wsgi_app = "app:app"
