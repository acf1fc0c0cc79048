"""When the worker hands a request on: `request_state` on what a client has sent so far. (The
worker itself runs under gunicorn in tests/e2e/test_slow_clients.py.)"""

from __future__ import annotations

import json

import pytest

from service.gunicorn_worker import MAX_HEAD_BYTES, Arrived, Refusal, request_state

BODY_CAP, ADMISSION_CAP = 1024, 4096


def state(data: bytes) -> Arrived | Refusal:
    return request_state(data, BODY_CAP, ADMISSION_CAP)


def post(path: str, body: bytes, *, length: int | None = None, extra: str = "") -> bytes:
    declared = len(body) if length is None else length
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {declared}\r\n{extra}\r\n"
    return head.encode() + body


def test_headers_not_finished_wait() -> None:
    assert state(b"GET /healthz HTTP/1.1\r\nHost: x\r\n") == Arrived(complete=False)
    assert state(b"G") == Arrived(complete=False)


def test_a_request_without_a_body_is_complete_at_the_end_of_its_headers() -> None:
    assert state(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n") == Arrived(complete=True)


def test_a_body_is_waited_for_until_content_length_has_arrived() -> None:
    whole = post("/v1/verify", b'{"image": "a"}')
    assert state(whole[:-1]) == Arrived(complete=False)
    assert state(whole) == Arrived(complete=True)
    assert state(whole + b"GET /next") == Arrived(complete=True)  # pipelined: handed on


def test_expect_100_continue_is_noticed_while_the_body_is_missing() -> None:
    head = post("/v1/verify", b"", length=10, extra="Expect: 100-continue\r\n")
    assert state(head) == Arrived(complete=False, expects_continue=True)
    assert state(head + b"0123456789") == Arrived(complete=True)


def test_a_body_over_the_cap_is_refused_before_it_is_read() -> None:
    refusal = state(post("/v1/verify", b"", length=BODY_CAP + 1))
    assert isinstance(refusal, Refusal) and refusal.status == 413
    assert state(post("/v1/verify", b"", length=BODY_CAP)) == Arrived(complete=False)


def test_admission_reviews_may_be_larger() -> None:
    waiting = state(post("/v1/admission?timeout=10s", b"", length=ADMISSION_CAP))
    assert waiting == Arrived(complete=False)
    refusal = state(post("/v1/admission", b"", length=ADMISSION_CAP + 1))
    assert isinstance(refusal, Refusal) and refusal.status == 413


def test_chunked_bodies_and_endless_headers_are_refused() -> None:
    chunked = b"POST /v1/verify HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    refusal = state(chunked)
    assert isinstance(refusal, Refusal) and refusal.status == 411
    endless = b"GET / HTTP/1.1\r\n" + b"X-A: " + b"a" * MAX_HEAD_BYTES
    refusal = state(endless)
    assert isinstance(refusal, Refusal) and refusal.status == 431


@pytest.mark.parametrize("length", ["-1", "ten", "1, 2"])
def test_a_malformed_length_is_left_to_gunicorn(length: str) -> None:
    data = f"POST /v1/verify HTTP/1.1\r\nContent-Length: {length}\r\n\r\n".encode()
    assert state(data) == Arrived(complete=True)


def test_a_refusal_is_a_problem_document_that_closes_the_connection() -> None:
    answer = Refusal(408, "Request Timeout", "the request did not arrive within 10s").response()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert b"Connection: close" in head and b"Content-Type: application/problem+json" in head
    assert f"Content-Length: {len(body)}".encode() in head
    problem = json.loads(body)
    assert problem["type"] == "https://sigverify.dev/problems/request-timeout"
    assert problem["status"] == 408
