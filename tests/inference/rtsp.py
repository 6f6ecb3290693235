"""A small RTSP server for tests: an endless Motion-JPEG stream (RTP payload type 26, RFC 2435)
over RTSP's interleaved TCP, on the loopback. What an IP camera speaks, enough of it for FFmpeg's
client (OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN; keep-alives answered); no RTSP server installs
from the package registries.

Each JPEG is sent as its scan data, with its two quantisation tables in the first fragment: RFC
2435 rebuilds the rest of the header (standard Huffman tables, which OpenCV's encoder uses unless
told to optimise them).
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable

PAYLOAD = 1400  # bytes of JPEG data an RTP packet carries at most


def jpeg_parts(jpeg: bytes) -> tuple[bytes, bytes, int, int]:
    """A baseline 4:2:0 JPEG -> (its two 64-entry 8-bit quantisation tables, the entropy-coded scan
    without EOI, width, height)."""
    tables, pos, width, height = b"", 2, 0, 0
    while True:
        marker, length = jpeg[pos + 1], struct.unpack(">H", jpeg[pos + 2 : pos + 4])[0]
        body = jpeg[pos + 4 : pos + 2 + length]
        if marker == 0xDB:  # DQT: one or more (precision/id, 64 entries) tables
            for k in range(0, len(body), 65):
                tables += body[k + 1 : k + 65]
        elif marker == 0xC0:  # SOF0: precision, height, width, components
            height, width = struct.unpack(">HH", body[1:5])
            if body[5] != 3 or body[7] != 0x22:
                raise ValueError("the test stream sends 4:2:0 colour JPEGs only")
        elif marker == 0xDD:
            raise ValueError("restart markers are not sent by this server")
        elif marker == 0xDA:  # SOS: the scan follows its header
            scan = jpeg[pos + 2 + length :]
            return tables, scan[:-2] if scan.endswith(b"\xff\xd9") else scan, width, height
        pos += 2 + length


def rtp_packets(jpeg: bytes, *, seq: int, timestamp: int, ssrc: int = 0x1234ABCD) -> list[bytes]:
    """One frame as RTP/JPEG packets (type 1: 4:2:0; Q 255: the tables travel in the first)."""
    tables, scan, width, height = jpeg_parts(jpeg)
    if len(tables) != 128:
        raise ValueError("expected two 8-bit quantisation tables")
    packets = []
    for offset in range(0, len(scan), PAYLOAD):
        chunk = scan[offset : offset + PAYLOAD]
        last = offset + PAYLOAD >= len(scan)
        header = struct.pack(">BBHII", 0x80, (0x80 if last else 0) | 26, (seq + len(packets)) & 0xFFFF, timestamp, ssrc)
        jpeg_header = struct.pack(">I", offset & 0xFFFFFF) + bytes([1, 255, width // 8, height // 8])
        quant = struct.pack(">BBH", 0, 0, 128) + tables if offset == 0 else b""
        packets.append(header + jpeg_header + quant + chunk)
    return packets


class RtspServer:
    """``rtsp://127.0.0.1:PORT/live``: ``frame(k)`` (JPEG bytes of frame ``k``) at ``fps``, to every
    client that sends PLAY, until :meth:`close`."""

    def __init__(self, frame: Callable[[int], bytes], fps: float = 25.0) -> None:
        self.frame, self.fps = frame, fps
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"rtsp://127.0.0.1:{self.sock.getsockname()[1]}/live"
        self.closing = threading.Event()
        self.methods: list[str] = []  # every request seen, in order
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.closing.set()
        self.sock.close()

    def _accept(self) -> None:
        while not self.closing.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn: socket.socket) -> None:
        lock, playing = threading.Lock(), threading.Event()
        reader = conn.makefile("rb")
        try:
            while not self.closing.is_set():
                first = reader.read(1)
                if not first:
                    return
                if first == b"$":  # the client's own interleaved packets (RTCP reports): skipped
                    _, length = struct.unpack(">BH", reader.read(3))
                    reader.read(length)
                    continue
                lines = [first + reader.readline()]
                while lines[-1] not in (b"\r\n", b"\n", b""):
                    lines.append(reader.readline())
                head = b"".join(lines).decode("latin-1").split("\r\n")
                fields = dict(line.split(":", 1) for line in head[1:] if ":" in line)
                fields = {k.strip().lower(): v.strip() for k, v in fields.items()}
                if int(fields.get("content-length", 0)):
                    reader.read(int(fields["content-length"]))
                method = head[0].split(" ")[0]
                self.methods.append(method)
                status, extra, body = self._answer(method, fields)
                reply = f"RTSP/1.0 {status}\r\nCSeq: {fields.get('cseq', '0')}\r\n{extra}"
                reply += f"Content-Length: {len(body)}\r\n\r\n{body}"
                with lock:
                    conn.sendall(reply.encode())
                if method == "PLAY" and not playing.is_set():
                    playing.set()
                    threading.Thread(target=self._play, args=(conn, lock), daemon=True).start()
                if method == "TEARDOWN":
                    return
        except (OSError, ValueError, struct.error):
            return
        finally:
            playing.clear()
            conn.close()

    def _answer(self, method: str, fields: dict[str, str]) -> tuple[str, str, str]:
        session = "Session: 12345678;timeout=60\r\n"
        if method == "OPTIONS":
            return "200 OK", "Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER\r\n", ""
        if method == "DESCRIBE":
            sdp = ("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=csrseg test\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                   "m=video 0 RTP/AVP 26\r\na=control:track1\r\n")
            return "200 OK", f"Content-Base: {self.url}/\r\nContent-Type: application/sdp\r\n", sdp
        if method == "SETUP":
            if "TCP" not in fields.get("transport", "").upper():  # UDP first, as clients try: refused
                return "461 Unsupported Transport", "", ""
            return "200 OK", session + "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n", ""
        if method in ("PLAY", "GET_PARAMETER", "TEARDOWN"):
            return "200 OK", session, ""
        return "405 Method Not Allowed", "", ""

    def _play(self, conn: socket.socket, lock: threading.Lock) -> None:
        seq, k, start = 0, 0, time.monotonic()
        try:
            while not self.closing.is_set():
                packets = rtp_packets(self.frame(k), seq=seq, timestamp=int(k * 90000 / self.fps))
                with lock:
                    for packet in packets:
                        conn.sendall(b"$\x00" + struct.pack(">H", len(packet)) + packet)
                seq, k = seq + len(packets), k + 1
                time.sleep(max(0.0, start + k / self.fps - time.monotonic()))
        except OSError:
            return
