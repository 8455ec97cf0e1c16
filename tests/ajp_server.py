"""A small AJP/1.3 container for tests, written from the protocol (not from hbfork's codec):
it parses FORWARD_REQUEST, asks for body chunks (GET_BODY_CHUNK) as Tomcat does, answers CPING,
and sends SEND_HEADERS, SEND_BODY_CHUNK and END_RESPONSE with reuse.

Paths: …/echo reads the whole body (elsewhere the first body packet is dropped unread, as
Tomcat does); /stream answers without a Content-Length in three chunks; /split writes its head, then
the beginning of the next packet, then the rest;
/close ends without reuse and closes; /garbage answers bytes that are not AJP; anything else
answers without reading the body. Every answer is JSON: what the request carried, the
connection's serial number and how many requests it served."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from typing import Any

METHODS = ["", "OPTIONS", "GET", "HEAD", "POST", "PUT", "DELETE", "TRACE"]
HEADER_CODES = {0xA001 + i: n for i, n in enumerate((
    "accept", "accept-charset", "accept-encoding", "accept-language", "authorization",
    "connection", "content-type", "content-length", "cookie", "cookie2", "host", "pragma",
    "referer", "user-agent"))}


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        part = sock.recv(n - len(data))
        if not part:
            raise EOFError
        data += part
    return data


def read_packet(sock: socket.socket) -> bytes:
    head = _recv_exact(sock, 4)
    assert head[:2] == b"\x12\x34", head
    return _recv_exact(sock, struct.unpack("!H", head[2:])[0])


def packet(payload: bytes) -> bytes:
    return b"AB" + struct.pack("!H", len(payload)) + payload


def string(value: str) -> bytes:
    data = value.encode("latin-1")
    return struct.pack("!H", len(data)) + data + b"\0"


class Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def byte(self) -> int:
        self.at += 1
        return self.data[self.at - 1]

    def u16(self) -> int:
        self.at += 2
        return int(struct.unpack("!H", self.data[self.at - 2:self.at])[0])

    def string(self) -> str | None:
        n = self.u16()
        if n == 0xFFFF:
            return None
        value = self.data[self.at:self.at + n].decode("latin-1")
        assert self.data[self.at + n] == 0
        self.at += n + 1
        return value


def parse_forward(payload: bytes) -> dict[str, Any]:
    r = Reader(payload)
    assert r.byte() == 2
    code = r.byte()
    request: dict[str, Any] = {"method": METHODS[code] if code < len(METHODS) else code,
                               "protocol": r.string(), "uri": r.string(),
                               "remote_addr": r.string(), "remote_host": r.string(),
                               "server_name": r.string(), "server_port": r.u16(),
                               "ssl": bool(r.byte())}
    headers: dict[str, str] = {}
    for _ in range(r.u16()):
        at = r.at
        code = r.u16()
        if code >= 0xA000:
            name = HEADER_CODES[code]
        else:
            r.at = at
            name = (r.string() or "").lower()
        headers[name] = r.string() or ""
    request["headers"] = headers
    attributes: dict[str, str] = {}
    while (kind := r.byte()) != 0xFF:
        if kind == 0x0A:
            name = r.string() or ""
            attributes[name] = r.string() or ""
        else:
            attributes[str(kind)] = r.string() or ""
    request["attributes"] = attributes
    assert r.at == len(payload)
    return request


class AjpServer:
    def __init__(self, ip: str = "127.0.0.1", secret: str = "", route: str = "") -> None:
        self.sock = socket.create_server((ip, 0))
        self.ip, self.port = ip, self.sock.getsockname()[1]
        self.secret, self.route = secret, route
        self.connections = 0
        self.pings = 0
        self.answer_pings = True  # False: a CPING gets no CPONG (a hung container)
        self.lock = threading.Lock()
        self.stopped = False
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"

    def stop(self) -> None:
        self.stopped = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close alone would not)
        except OSError:
            pass
        self.sock.close()
        for conn in self.conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            except OSError:
                pass

    def _accept(self) -> None:
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                serial = self.connections
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn, serial), daemon=True).start()

    def _serve(self, conn: socket.socket, serial: int) -> None:
        served = 0
        try:
            while True:
                payload = read_packet(conn)
                if payload == b"\x0a":
                    self.pings += 1
                    if self.answer_pings:
                        conn.sendall(packet(b"\x09"))
                    continue
                served += 1
                if not self._answer(conn, parse_forward(payload), serial, served):
                    return
        except (EOFError, OSError):
            pass
        finally:
            conn.close()

    def _body(self, conn: socket.socket, request: dict[str, Any]) -> bytes:
        length = int(request["headers"].get("content-length", "-1"))
        body = b""
        first = length > 0
        while length < 0 or len(body) < length:
            if not first:
                conn.sendall(packet(b"\x06" + struct.pack("!H", 8186)))
            first = False
            data = read_packet(conn)
            if not data or struct.unpack("!H", data[:2])[0] == 0:
                break
            size = struct.unpack("!H", data[:2])[0]
            assert size == len(data) - 2
            body += data[2:]
        return body

    def _swallow(self, conn: socket.socket, request: dict[str, Any]) -> bytes:
        """A body the application did not read: its first packet, which came unasked, is read
        and dropped (as Tomcat does), nothing more is asked for."""
        if int(request["headers"].get("content-length", "0")) > 0:
            read_packet(conn)
        return b""

    def _answer(self, conn: socket.socket, request: dict[str, Any], serial: int,
                served: int) -> bool:
        uri = request["uri"]
        secret = request["attributes"].get("12", "")
        if self.secret and secret != self.secret:
            self._send(conn, 403, {"error": "secret"}, reuse=False)
            return False
        if uri == "/garbage":
            conn.sendall(b"HTTP/1.1 200 OK\r\n\r\n")
            return False
        body = self._body(conn, request) if uri.endswith("/echo") else self._swallow(conn, request)
        answer = {**request, "body_length": len(body), "body": body[:64].decode("latin-1"),
                  "conn": serial, "served": served, "route": self.route}
        if uri == "/stream":
            data = json.dumps(answer).encode()
            conn.sendall(packet(b"\x04" + struct.pack("!H", 200) + string("OK")
                                + struct.pack("!H", 1) + b"\xa0\x01" + string("text/plain")))
            for at in range(0, len(data), max(1, len(data) // 3)):
                piece = data[at:at + max(1, len(data) // 3)]
                conn.sendall(packet(b"\x03" + struct.pack("!H", len(piece)) + piece + b"\0"))
            conn.sendall(packet(b"\x05\x01"))
            return True
        reuse = uri != "/close"
        self._send(conn, 200, answer, reuse, split=uri == "/split")
        return reuse

    def _send(self, conn: socket.socket, status: int, answer: dict[str, Any],
              reuse: bool, split: bool = False) -> None:
        """The answer in one write; `split`: its head, then (a moment later) the rest."""
        data = json.dumps(answer).encode()
        cookie = f"JSESSIONID=abc.{self.route}; Path=/" if self.route else "x=1"
        head = (b"\x04" + struct.pack("!H", status) + string("OK") + struct.pack("!H", 3)
                + b"\xa0\x01" + string("application/json")
                + b"\xa0\x03" + string(str(len(data)))
                + b"\xa0\x07" + string(cookie))
        out = packet(head)
        for at in range(0, len(data), 8000):
            piece = data[at:at + 8000]
            out += packet(b"\x03" + struct.pack("!H", len(piece)) + piece + b"\0")
        out += packet(b"\x05" + (b"\x01" if reuse else b"\x00"))
        if split:
            first = len(packet(head))
            conn.sendall(out[:first])
            time.sleep(0.05)  # the proxy reads the head alone (what it does is the test's)
            conn.sendall(out[first:first + 3])  # and then part of a packet
            time.sleep(0.05)
            out = out[first + 3:]
        conn.sendall(out)
