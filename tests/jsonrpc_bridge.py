"""The embedded (py-evm) chain served as an HTTP JSON-RPC node on a loopback port, for command-line tools
such as ``pledgeledger verify-evidence --rpc URL`` in tests that run on the embedded chain.

Requests go through the in-process ``Web3`` (its formatters turn eth-tester's answers into web3
objects); answers are encoded as a node encodes them (quantities and bytes as ``0x`` hex).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from web3 import Web3


def _encode(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return hex(value)
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, dict) or hasattr(value, "items"):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    return value


class JsonRpcBridge:
    def __init__(self, w3: Web3) -> None:
        self.w3 = w3
        bridge = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                answer = [bridge.answer(r) for r in body] if isinstance(body, list) else bridge.answer(body)
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            result = self.w3.manager.request_blocking(request["method"], request.get("params", []))
        except Exception as exc:  # a node answers every failure with an error object
            return {"jsonrpc": "2.0", "id": request.get("id"), "error": {"code": -32000, "message": str(exc)}}
        return {"jsonrpc": "2.0", "id": request.get("id"), "result": _encode(result)}

    def __enter__(self) -> JsonRpcBridge:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
