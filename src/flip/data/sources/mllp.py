"""An MLLP listener: receives HL7 v2 messages, ingests each as one batch, answers with an ACK.

The ACK is AA when the whole message was stored, AE with the reason when any of
it was quarantined. It serves the hospital's interface engine on the site's own
network; it has nothing to do with the hub.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime

from flip.data.ingest import Ingestor
from flip.data.sources.hl7v2 import END, START, _normalise, _text, parse_message


def frame(message: str) -> bytes:
    """Wrap a message in MLLP framing."""
    return START + message.encode("utf-8") + END + b"\r"


def acknowledgement(message: bytes, error: str | None) -> str:
    """An ACK for `message`: AA, or AE with `error` in MSA-3."""
    fields = _text(message).split("\r", 1)[0].split("|")
    field = lambda i: fields[i] if len(fields) > i else ""  # noqa: E731
    event = field(8).split("^")[1] if "^" in field(8) else ""
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    control = field(9)
    version = field(11) or "2.5"
    receiver = f"{field(2)}|{field(3)}"
    sender = f"FLIP|{field(4) or 'SITE'}"
    msh = f"MSH|^~\\&|{sender}|{receiver}|{stamp}||ACK^{event}|ACK{control}|P|{version}"
    reason = (error or "").replace("|", "/").replace("\r", " ")[:200]
    msa = f"MSA|AA|{control}" if error is None else f"MSA|AE|{control}|{reason}"
    return f"{msh}\r{msa}\r"


class MllpListener:
    """Serves MLLP on host:port and writes through one Ingestor, one message at a time."""

    def __init__(self, ingestor: Ingestor, host: str = "127.0.0.1", port: int = 2575) -> None:
        self.ingestor = ingestor
        self.host, self.port = host, port
        self.received = 0
        self._write_lock = threading.Lock()
        self._server: asyncio.base_events.Server | None = None

    def handle(self, message: bytes, peer: str) -> str:
        """Ingest one message and return its ACK."""
        with self._write_lock:
            self.received += 1
            records = parse_message(message, f"mllp:{peer}#{self.received}")
            rejected = self.ingestor.write(records, final=True)
        error = "; ".join(f"{r.rule}: {r.message}" for r in rejected) or None
        return acknowledgement(message, error)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = "{}:{}".format(*writer.get_extra_info("peername")[:2])
        buffer = b""
        try:
            while chunk := await reader.read(65536):
                buffer += chunk
                while START in buffer and END in buffer:
                    start = buffer.index(START)
                    end = buffer.index(END, start)
                    message = _normalise(buffer[start + 1 : end])
                    buffer = buffer[end + 1 :].lstrip(b"\r")
                    ack = await asyncio.to_thread(self.handle, message, peer)
                    writer.write(frame(ack))
                    await writer.drain()
        finally:
            writer.close()

    async def serve(self, ready: threading.Event | None = None) -> None:
        """Serve until cancelled."""
        self._server = await asyncio.start_server(self._client, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        if ready is not None:
            ready.set()
        async with self._server:
            await self._server.serve_forever()
