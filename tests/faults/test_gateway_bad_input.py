"""Hostile and broken requests to the gateway: always a 4xx with a body, never a 500 or a hang."""

from __future__ import annotations

import httpx
import pytest


@pytest.mark.parametrize(
    "content",
    [
        b"[" * 30_000 + b"]" * 30_000,  # deep nesting (a RecursionError must not become 500)
        b'{"dialog": [' + b"[" * 5_000 + b"]" * 5_000 + b"]}",
        b'{"dialog": ["\xff\xfe\xfd"]}',  # invalid UTF-8
        b'{"dialog": ["\xed\xa0\x80"]}',  # a UTF-8-encoded lone surrogate
        b'{"dialog": ["\\ud800 broken"]}',  # the same as a JSON escape
        b"\x00\x01\x02",
        b"",
        b"null",
        b'{"dialog": ["x"], "params": {"temperature": 1e999}}',
        b'{"dialog": ["x"], "params": {"max_new_tokens": 1.5}}',
        b'{"dialog": ["x"], "timeout_s": -1}',
    ],
)
def test_broken_bodies_get_a_4xx_with_a_body(gateway, content):
    response = httpx.post(
        gateway.base_url + "/v1/replies", content=content, headers={"content-type": "application/json"}, timeout=30
    )
    assert 400 <= response.status_code < 500, response.text[:300]
    assert response.json()["detail"]


def test_huge_body_without_content_length_is_413(gateway):
    def chunks():
        for _ in range(200):
            yield b"x" * 1024

    response = httpx.post(
        gateway.base_url + "/v1/replies", content=chunks(), headers={"content-type": "application/json"}, timeout=30
    )
    assert response.status_code == 413


def test_wrong_content_type_and_method(gateway):
    assert (
        httpx.post(
            gateway.base_url + "/v1/replies",
            content=b"dialog=x",
            headers={"content-type": "application/x-www-form-urlencoded"},
            timeout=10,
        ).status_code
        == 422
    )
    assert httpx.get(gateway.base_url + "/v1/replies", timeout=10).status_code == 405


def test_rtl_zero_width_and_emoji_turns_are_answered(gateway):
    dialog = ["\u202eпривет\u200b\u200d анон 👀", "שלום \u2066мир\u2069", "\ufeff" + "а" * 4000]
    response = httpx.post(
        gateway.base_url + "/v1/replies", json={"dialog": dialog, "params": {"max_new_tokens": 6}}, timeout=60
    )
    assert response.status_code == 200, response.text
    assert response.json()["text"]
