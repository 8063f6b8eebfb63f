"""An MLLP listener: receives HL7 v2 messages, ingests each as one batch, answers with an ACK.

The ACK is AA when nothing of the message was quarantined (records skipped by a rule
count as accepted), AE with the reasons when any of it was, and AR when the store stayed
busy (another process writing) for longer than `busy_timeout`: the sender may resend.
The listener holds the store only while it writes a message: between messages other
processes (`flip site report`, `count`, other ingests) open it as usual. It serves the
hospital's interface engine on the site's own network; it has nothing to do with the hub.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import create_engine
from sqlalchemy.exc import DBAPIError

from flip.data.cdm.store import Store, store_url
from flip.data.ingest import Ingestor, IngestReport
from flip.data.sources.hl7v2 import END, START, _normalise, _text, parse_message
from flip.data.sources.identity import PersonIdentity
from flip.data.terminology import Vocabulary

logger = logging.getLogger(__name__)


class StoreBusy(RuntimeError):
    """The store stayed locked by another process for longer than the listener waits."""


class SharedStore:
    """A store opened for one message at a time, so that no lock is held between messages.

    DuckDB lets one process write a file at a time: each `session()` opens the store
    (waiting while another process holds it, up to `busy_timeout` seconds), and closes
    it when the message is written.
    """

    def __init__(self, location: str, schema: str | None = None, busy_timeout: float = 30.0):
        self.url, self.schema, self.busy_timeout = store_url(location), schema, busy_timeout

    @contextmanager
    def session(self) -> Iterator[Store]:
        """The store, open until the block ends; StoreBusy when it cannot be opened in time."""
        engine = create_engine(self.url)
        try:
            deadline = time.monotonic() + self.busy_timeout
            delay = 0.05
            while True:
                try:
                    with engine.connect():
                        break
                except DBAPIError as exc:
                    if "lock" not in str(exc).lower():
                        raise
                    if time.monotonic() > deadline:
                        raise StoreBusy(f"the store is busy: {str(exc).splitlines()[0]}") from None
                    time.sleep(delay)
                    delay = min(delay * 2, 1.0)
            yield Store(engine=engine, schema=self.schema)
        finally:
            engine.dispose()


def frame(message: str) -> bytes:
    """Wrap a message in MLLP framing."""
    return START + message.encode("utf-8") + END + b"\r"


def acknowledgement(message: bytes, code: str, error: str | None = None) -> str:
    """An ACK for `message` (MSA-1 `code`: AA, AE or AR, `error` in MSA-3), written with the
    inbound message's separators. Its MSH-3/4/5/6 (sending application and facility,
    receiving application and facility) are the inbound MSH-5/6/3/4: FLIP answers as the
    receiver the sender addressed; MSH-11 (processing ID) is the inbound one."""
    header = _text(message).split("\r", 1)[0]
    sep = header[3] if len(header) > 3 and header.startswith("MSH") else "|"
    fields = header.split(sep)
    encoding = fields[1] if len(fields) > 1 and len(fields[1]) >= 2 else "^~\\&"
    field = lambda i: fields[i] if len(fields) > i else ""  # noqa: E731
    event = field(8).split(encoding[0])[1] if encoding[0] in field(8) else ""
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    control = field(9)
    processing, version = field(10) or "P", field(11) or "2.5"
    parties = sep.join((field(4), field(5), field(2), field(3)))
    msh = (
        sep.join(("MSH", encoding, parties, stamp, "", f"ACK{encoding[0]}{event}", f"ACK{control}"))
        + f"{sep}{processing}{sep}{version}"
    )
    reason = _escaped((error or "").replace("\r", " ")[:200], sep, encoding)
    msa = sep.join(("MSA", code, control, *([reason] if reason else [])))
    return f"{msh}\r{msa}\r"


def _escaped(text: str, sep: str, encoding: str) -> str:
    """`text` with HL7's delimiters written as escape sequences (`\\F\\`, `\\S\\`, …)."""
    escape = encoding[2] if len(encoding) > 2 else "\\"
    names = {escape: "E", sep: "F", encoding[0]: "S", encoding[1]: "R"}
    if len(encoding) > 3:
        names[encoding[3]] = "T"
    return "".join(f"{escape}{names[c]}{escape}" if c in names else c for c in text)


class MllpListener:
    """Serves MLLP on host:port; writes each message through one ingest run, one at a time.

    Give it a SharedStore (the store is opened per message) or an Ingestor whose run was
    started (the store is held by the caller).
    """

    def __init__(
        self,
        ingestor: Ingestor,
        host: str = "127.0.0.1",
        port: int = 2575,
        shared: SharedStore | None = None,
        identity: PersonIdentity | None = None,
    ) -> None:
        self.ingestor, self.shared, self.identity = ingestor, shared, identity
        self.host, self.port = host, port
        self.received = 0
        self._write_lock = threading.Lock()
        self._server: asyncio.base_events.Server | None = None

    @contextmanager
    def _store(self) -> Iterator[None]:
        if self.shared is None:
            yield
            return
        with self.shared.session() as store:
            self.ingestor.store = store
            yield

    def handle(self, message: bytes, peer: str) -> str:
        """Ingest one message and return its ACK: AR when the store stays busy, AE naming
        the error when the message could not be written (nothing of it was)."""
        with self._write_lock:
            self.received += 1
            try:
                records = parse_message(message, f"mllp:{peer}#{self.received}", self.identity)
                with self._store():
                    rejected = self.ingestor.write(records, final=True)
            except StoreBusy as exc:
                return acknowledgement(message, "AR", f"{exc}; resend later")
            except Exception as exc:  # the sender is told; the listener goes on
                logger.exception("MLLP message %s from %s not written", self.received, peer)
                reason = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
                return acknowledgement(message, "AE", f"not written: {reason}")
        error = "; ".join(f"{r.rule}: {r.message}" for r in rejected) or None
        return acknowledgement(message, "AA" if error is None else "AE", error)

    def finish(self) -> IngestReport:
        """Close the ingest run with its counts."""
        with self._write_lock, self._store():
            return self.ingestor.finish()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = "{}:{}".format(*writer.get_extra_info("peername")[:2])
        buffer = b""
        try:
            while chunk := await reader.read(65536):
                buffer += chunk
                while (start := buffer.find(START)) >= 0 and (end := buffer.find(END, start)) >= 0:
                    message = _normalise(buffer[start + 1 : end])
                    buffer = buffer[end + 1 :]
                    ack = await asyncio.to_thread(self.handle, message, peer)
                    writer.write(frame(ack))
                    await writer.drain()
        finally:
            writer.close()

    async def serve(
        self, ready: threading.Event | None = None, stop_on: tuple[int, ...] = ()
    ) -> None:
        """Serve until cancelled, or until one of the signals `stop_on` arrives (then return)."""
        self._server = await asyncio.start_server(self._client, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for number in stop_on:
            loop.add_signal_handler(number, stop.set)
        if ready is not None:
            ready.set()
        async with self._server:
            if not stop_on:
                await self._server.serve_forever()
            await stop.wait()


def listen(
    location: str,
    system: str,
    host: str = "127.0.0.1",
    port: int = 2575,
    *,
    code_systems: dict[str, str] | None = None,
    on_ready: threading.Event | None = None,
    identity: PersonIdentity | None = None,
) -> IngestReport:
    """Run an MLLP listener on the store at `location` until SIGTERM or SIGINT; return the
    run's counts. The store is opened only while a message is written; `identity` is the
    site's person identifier."""
    shared = SharedStore(location)
    with shared.session() as store:
        vocabulary = Vocabulary.from_store(store).with_code_systems(code_systems or {})
        ingestor = Ingestor(store, vocabulary, system)
        ingestor.start("hl7v2", f"mllp://{host}:{port}")
    listener = MllpListener(ingestor, host, port, shared=shared, identity=identity)
    try:
        asyncio.run(listener.serve(on_ready, stop_on=(signal.SIGTERM, signal.SIGINT)))
    finally:
        report = listener.finish()
    return report
