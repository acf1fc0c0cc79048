"""gunicorn's entry point: `service.wsgi:app`, built from the environment in each worker."""

from __future__ import annotations

from service.app import create_app

app = create_app()
