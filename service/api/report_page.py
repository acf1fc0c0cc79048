"""`GET /reports/{policy}`: a policy's report as a page for people, and its sign-in.

The page shows what `GET /v1/reports/{policy}` answers, for the same tenant: the line that says
whether the policy is ready to enforce (and the rule it follows), what to fix grouped by fix,
the images that would be denied first, each with its failing check, reasons and what to fix,
then the passing ones.

Who may look: with API tokens configured, a token in `Authorization: Bearer` or in the sign-in
cookie (`service.api.auth.page_viewer`); never in the URL, where logs and history would keep
it. Without one the page is a sign-in form, the same whether the policy exists or not; the form
posts the token to this path, which sets the cookie (HttpOnly, SameSite=Strict, Secure over
HTTPS, path /reports/, 8 hours) and redirects to the page. A form posted from another site is
refused (its `Sec-Fetch-Site` or `Origin` is not this origin), so no other site can sign a
browser in or out (login CSRF); reading is a GET with no side effect, and SameSite=Strict keeps
the cookie off cross-site requests. With authentication off the page needs no sign-in and says
that anyone who can reach the service can read every report.

Everything a caller, registry or signer wrote (references, namespaces, workload names,
reasons, identities) is escaped by Jinja's autoescape. The page has no script; its only style
is inline, allowed by the Content-Security-Policy by its hash and nothing else.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.resources
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, request, url_for
from jinja2 import Environment, PackageLoader, StrictUndefined

from service.api.auth import REPORT_COOKIE, REPORT_PAGES, Viewer, page_viewer
from service.api.reports import read_report
from service.reports import READY_RULE
from service.state import services

bp = Blueprint("report_page", __name__, url_prefix=REPORT_PAGES.rstrip("/"))

COOKIE_MAX_AGE = 8 * 3600


@functools.cache
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("service", "data"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@functools.cache
def _css() -> str:
    return (importlib.resources.files("service") / "data" / "report.css").read_text()


@functools.cache
def page_csp() -> str:
    """No script, no request but the form back to this origin, and exactly the page's style."""
    digest = base64.b64encode(hashlib.sha256(_css().encode()).digest()).decode()
    return (
        f"default-src 'none'; style-src 'sha256-{digest}'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    )


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _page(status: int, view: str, title: str, viewer: Viewer | None, **values: Any) -> Response:
    auth_off = not services().tokens.enabled
    html = (
        _environment()
        .get_template("report.html")
        .render(
            view=view,
            title=title,
            css=_css(),
            when=_when,
            rule=READY_RULE,
            auth_off=auth_off,
            signed_in=viewer is not None and viewer.by_cookie,
            action=url_for(str(request.endpoint), **(request.view_args or {})),
            error=values.pop("error", None),
            **values,
        )
    )
    response = Response(html, status=status, mimetype="text/html")
    response.headers["Content-Security-Policy"] = page_csp()
    # The sign-in form's Origin must reach us: `no-referrer` would make it `null`.
    response.headers["Referrer-Policy"] = "same-origin"
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="sigverify"'
    return response


def _sign_in(error: str | None = None) -> Response:
    return _page(401, "sign-in", "Sign in to see this report", None, error=error)


@bp.get("/<policy>")
def page(policy: str) -> Response:
    viewer = page_viewer(services().tokens)
    if viewer is None:
        return _sign_in()
    found = read_report(policy, viewer.tenant)
    if found is None:
        return _page(
            404,
            "not-found",
            "No such report",
            viewer,
            error=f"There is no policy named {policy!r} for you: see GET /v1/policies.",
        )
    return _page(200, "report", f"Report of policy {found.policy.name}", viewer, report=found)


def _same_origin() -> bool:
    """Whether the form was posted from a page of this origin (`Sec-Fetch-Site`, sent by
    current browsers, else `Origin`); a request with neither is refused."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site == "same-origin"
    origin = request.headers.get("Origin")
    return origin is not None and origin == request.host_url.rstrip("/")


def _see_other(location: str) -> Response:
    """303 to the page, with no body."""
    return Response(status=303, headers={"Location": location})


@bp.post("/<policy>")
def sign_in(policy: str) -> Response:
    """The page's form: `action=sign-in` with `token`, or `action=sign-out`."""
    if not _same_origin():
        return _page(
            403,
            "refused",
            "Refused",
            None,
            error="This form can only be sent from the report page itself.",
        )
    back = url_for("report_page.page", policy=policy)
    tokens = services().tokens
    action = request.form.get("action", "")
    if action == "sign-out" or not tokens.enabled:
        response = _see_other(back)
        response.delete_cookie(REPORT_COOKIE, path=REPORT_PAGES, httponly=True, samesite="Strict")
        return response
    if action != "sign-in":
        return _sign_in("Unknown action: sign in with your API token.")
    token = request.form.get("token", "").strip()
    if not token or tokens.tenant(token) is None:
        return _sign_in("That token was not accepted.")
    response = _see_other(back)
    response.set_cookie(
        REPORT_COOKIE,
        token,
        max_age=COOKIE_MAX_AGE,
        path=REPORT_PAGES,
        secure=request.is_secure,
        httponly=True,
        samesite="Strict",
    )
    return response
