"""The MLLP listener as a site runs it: `flip site listen`, sharing its store."""

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from flip.data.sources.mllp import MllpListener, acknowledgement, frame

ADT = "\r".join(
    (
        "MSH|^~\\&|PAS|NORTH HOSP|FLIP|SITE|20240101083000||ADT^A01^ADT_A01|M1|P|2.5",
        "PID|1||5001^^^NORTH^MR||Doe^Jane||19500304|F",
        'PV1|1|I|WARD1|""||||||||||||||||V51',
    )
)
ORU = "\r".join(
    (
        "MSH|^~\\&|LAB|NORTH HOSP|FLIP|SITE|20240102120000||ORU^R01|M2|P|2.5",
        "PID|1||5001^^^NORTH^MR||Doe^Jane||19500304|F",
        "OBR|1||ACC1|24331-1^Lipid panel^LN|||202401021100",
        "OBX|1|NM|2093-3^Cholesterol^LN||5.9|mmol/L|||||F",
        "OBX|2|NM|2085-9^HDL^LN||high|mmol/L|||||F",
    )
)
OTHER = "\r".join(
    (
        "MSH|^~\\&|PAS|NORTH HOSP|FLIP|SITE|20240103090000||ADT^A04|F1|P|2.5",
        "PID|1||6001^^^NORTH^MR||Roe^Rita||19610101|F",
    )
)


def test_the_ack_answers_as_the_receiver_the_sender_addressed():
    ack = acknowledgement(ADT.encode(), "AA").split("\r")
    msh = ack[0].split("|")
    assert msh[2:6] == ["FLIP", "SITE", "PAS", "NORTH HOSP"]
    assert msh[8] == "ACK^A01" and msh[9] == "ACKM1"
    assert ack[1] == "MSA|AA|M1"
    rejected = acknowledgement(ORU.encode(), "AE", "hl7.obx.value_not_numeric: OBX 2 | <^x")
    assert rejected.split("\r")[1] == "MSA|AE|M2|hl7.obx.value_not_numeric: OBX 2 \\F\\ <\\S\\x"


def test_the_ack_uses_the_inbound_separators_and_processing_id():
    inbound = ADT.replace("|", "#").replace("|P|2.5", "#T#2.5").replace("#P#2.5", "#T#2.5")
    msh, msa = acknowledgement(inbound.encode(), "AA").split("\r")[:2]
    assert msh.split("#")[2:6] == ["FLIP", "SITE", "PAS", "NORTH HOSP"]
    assert msh.split("#")[8:11] == ["ACK^A01", "ACKM1", "T"]
    assert msa == "MSA#AA#M1"


def test_a_stray_end_byte_before_a_frame_does_not_drop_the_connection():
    class Echo(MllpListener):
        def handle(self, message: bytes, peer: str) -> str:
            return acknowledgement(message, "AA")

    listener, ready = Echo(None, port=0), threading.Event()  # type: ignore[arg-type]
    loop = asyncio.new_event_loop()

    def serve() -> None:
        with contextlib.suppress(asyncio.CancelledError):  # how this test stops it
            loop.run_until_complete(listener.serve(ready))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    data = frame(ADT)
    with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as sock:
        sock.sendall(b"\x1c" + data[:30])
        time.sleep(0.2)
        sock.sendall(data[30:])
        ack = sock.recv(4096)
    loop.call_soon_threadsafe(lambda: [t.cancel() for t in asyncio.all_tasks(loop)])
    thread.join(timeout=5)
    assert b"MSA|AA|M1" in ack


def _flip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flip", *args], capture_output=True, text=True, timeout=120
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _send(port: int, message: str) -> bytes:
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                sock.sendall(frame(message))
                return sock.recv(4096)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_the_listener_shares_its_store_and_sigterm_ends_its_run_with_counts(tmp_path):
    store = str(tmp_path / "site.duckdb")
    port = _free_port()
    listener = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flip",
            "site",
            "listen",
            "hl7v2",
            "--store",
            store,
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    try:
        first = _send(port, ADT)
        assert b"MSA|AA|M1" in first and b"|FLIP|SITE|PAS|NORTH HOSP|" in first
        report = _flip("site", "report", "--store", store, "--json")
        assert report.returncode == 0, report.stderr
        assert json.loads(report.stdout)["tables"]["person"] == 1
        cohort = tmp_path / "everyone.json"
        cohort.write_text(json.dumps({"name": "everyone"}))
        count = _flip("site", "count", str(cohort), "--store", store, "--min-cell", "1")
        assert count.returncode == 0 and "everyone: 1" in count.stdout, count.stderr
        feed = tmp_path / "other.hl7"
        feed.write_text(OTHER)
        other = _flip("site", "ingest", "hl7v2", str(feed), "--store", store, "--json")
        assert other.returncode == 0, other.stderr
        second = _send(port, ORU)
        assert b"MSA|AE|M2|hl7.obx.value_not_numeric" in second
    finally:
        listener.send_signal(signal.SIGTERM)
        out, err = listener.communicate(timeout=60)
    assert listener.returncode == 0, err
    counts = json.loads(out.strip().splitlines()[-1])
    assert counts["quarantined"] == 1 and counts["rules"] == {"hl7.obx.value_not_numeric": 1}
    assert counts["read"] == counts["loaded"] + counts["quarantined"] + counts["skipped"]
    report = json.loads(_flip("site", "report", "--store", store, "--json").stdout)
    assert report["tables"]["person"] == 2 and report["tables"]["measurement"] == 1
