"""gunicorn's entry point: `service.wsgi:app`, built from the environment in each worker.

gunicorn imports this module in each worker after the fork (`preload_app` is off), so the
background threads start in the process that serves; `create_app` alone starts none.
"""

from __future__ import annotations

from service.app import create_app
from service.state import Services

app = create_app()
_services = app.extensions["sigverify"]
assert isinstance(_services, Services)
_services.start_background()
