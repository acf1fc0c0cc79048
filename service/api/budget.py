"""Every request's time budget: a `Scope` of SIGVERIFY_REQUEST_TIMEOUT seconds around it.

The scope is set before the view runs and cancelled when the request has been answered
(`teardown_request`), so work done for it in other threads (batch and admission jobs run in
copies of its context) stops there too: registry and Rekor exchanges, retries and waits for an
identical lookup in flight all end by the scope's deadline (`service.outbound.deadline`).
"""

from __future__ import annotations

from flask import Flask, g

from service.outbound import Scope, deadline
from service.state import services


def install(app: Flask) -> None:
    """Give each request its scope, and end it with the request."""

    @app.before_request
    def _start() -> None:
        scope = Scope.starting(services().settings.request_timeout)
        g.sigverify_scope = scope
        g.sigverify_scope_token = deadline.enter(scope)

    @app.teardown_request
    def _end(_exc: BaseException | None) -> None:
        scope = g.pop("sigverify_scope", None)
        token = g.pop("sigverify_scope_token", None)
        if scope is not None:
            scope.cancel()
        if token is not None:
            deadline.leave(token)
