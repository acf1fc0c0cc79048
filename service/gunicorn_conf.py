"""gunicorn settings that do not come from the command line (`sigverify serve` passes those)."""

from __future__ import annotations

worker_class = "gthread"
timeout = 30
graceful_timeout = 20
keepalive = 5
max_requests = 2000
max_requests_jitter = 200
accesslog = "-"
errorlog = "-"
# Every worker builds its own app (and so its own HTTP and Redis clients) after fork.
preload_app = False
