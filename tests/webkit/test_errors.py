"""An unexpected error in a web app answers a bare 500 and leaves its traceback in the log."""

import logging

from fastapi import FastAPI
from fastapi.testclient import TestClient

from flip.webkit.security import server_error


def test_an_unexpected_error_is_a_plain_500_and_is_logged(caplog):
    app = FastAPI()
    app.add_exception_handler(Exception, server_error)

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret detail")

    with caplog.at_level(logging.ERROR, logger="flip.webkit.security"):
        answer = TestClient(app, raise_server_exceptions=False).get("/boom")
    assert answer.status_code == 500 and "secret detail" not in answer.text
    assert "content-security-policy" in answer.headers
    [record] = [r for r in caplog.records if r.name == "flip.webkit.security"]
    assert "GET /boom failed" in record.getMessage()
    assert "secret detail" in str(record.exc_info[1])
