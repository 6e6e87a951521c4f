"""A terminal chat with the model, through the gateway (so it exercises the whole queue)."""

from __future__ import annotations

import httpx

from shared.settings import GatewaySettings

HISTORY_TURNS = 3


def run_chat(settings: GatewaySettings, base_url: str | None = None) -> None:
    base = base_url or f"http://{settings.gateway_host}:{settings.gateway_port}"
    try:
        httpx.get(base + "/healthz", timeout=3).raise_for_status()
    except httpx.HTTPError:
        print(f"No gateway at {base}. Start the stack first: make run")
        return
    print("Пиши, анон (пустая строка или Ctrl-D — выход).")
    dialog: list[str] = []  # newest first, as the API takes it
    with httpx.Client(base_url=base, timeout=settings.reply_timeout_s + 5) as http:
        while True:
            try:
                text = input("> ").strip()
            except (EOFError, KeyboardInterrupt):
                print()
                return
            if not text:
                return
            dialog = [text, *dialog][:HISTORY_TURNS]
            response = http.post("/v1/replies", json={"dialog": dialog})
            if response.status_code != 200:
                print(f"[{response.status_code}] {response.json().get('detail')}")
                continue
            reply = response.json()
            print(f"< {reply['text']}   [{reply['model_version']}, {reply['generate_ms']} ms]")
            dialog = [reply["text"], *dialog][:HISTORY_TURNS]
