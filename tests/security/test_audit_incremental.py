"""Checking the audit chain reads only the entries appended since the last check (and the
entry that check ended at): an edit after that mark is found by the next check, an edit
before it by the full check (`full=true`), which also runs first after a start and daily."""

from sqlalchemy import delete, update

from flip.hub import audit as audit_log
from flip.hub.audit_checks import AuditChecks
from flip.hub.db import audit, connect


def _verify(hub, full: bool = False) -> dict:
    answer = hub.call("GET", "/audit/verify" + ("?full=true" if full else ""), hub.admin)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _edit(hub, seq: int) -> None:
    with hub.app.state.engine.begin() as conn:
        conn.execute(update(audit).where(audit.c.seq == seq).values(actor="user:mallory"))


def _projects(hub, token: str, n: int) -> None:
    for i in range(n):
        hub.call("POST", "/projects", token, json={"name": f"p{i}"})


def test_a_check_reads_only_what_was_appended_since_the_last(hub):
    researcher = hub.user("rita", "researcher")
    _projects(hub, researcher, 3)
    first = _verify(hub)
    assert first["ok"] and first["checked"]["full"], "the first check after a start is full"
    end = first["checked"]["to"]
    _projects(hub, researcher, 2)
    second = _verify(hub)
    assert second["ok"] and not second["checked"]["full"]
    assert (second["checked"]["from"], second["checked"]["to"]) == (end + 1, end + 2)


def test_an_edit_after_the_last_check_is_found_by_the_next(hub):
    researcher = hub.user("rita", "researcher")
    _projects(hub, researcher, 2)
    end = _verify(hub)["checked"]["to"]
    _projects(hub, researcher, 3)
    _edit(hub, end + 2)
    verdict = _verify(hub)
    assert not verdict["checked"]["full"]
    assert (verdict["ok"], verdict["broken_at"]) == (False, end + 2)
    assert _verify(hub)["broken_at"] == end + 2, "the mark did not move past the break"


def test_an_edit_to_the_entry_the_last_check_ended_at_is_found(hub):
    researcher = hub.user("rita", "researcher")
    _projects(hub, researcher, 2)
    end = _verify(hub)["checked"]["to"]
    _edit(hub, end)
    assert _verify(hub)["broken_at"] == end


def test_an_edit_before_the_last_check_is_found_by_the_full_check(hub):
    researcher = hub.user("rita", "researcher")
    _projects(hub, researcher, 3)
    assert _verify(hub)["ok"]
    _edit(hub, 2)
    assert _verify(hub)["ok"], "an incremental check does not re-read old entries"
    full = _verify(hub, full=True)
    assert full["checked"]["full"] and (full["ok"], full["broken_at"]) == (False, 2)


def test_the_full_check_runs_again_once_the_last_is_a_day_old(hub_db_url):
    engine = connect(hub_db_url)
    clock = [1000.0]
    checks = AuditChecks(full_every=3600, clock=lambda: clock[0])
    with engine.connect() as conn:
        assert checks.check(conn)["full"]
        assert not checks.check(conn)["full"]
        clock[0] += 3601
        assert checks.check(conn)["full"]
    engine.dispose()


def test_a_chain_cut_back_before_the_last_check_is_found(hub):
    researcher = hub.user("rita", "researcher")
    _projects(hub, researcher, 3)
    end = _verify(hub)["checked"]["to"]
    with hub.app.state.engine.begin() as conn:
        conn.execute(delete(audit).where(audit.c.seq >= end - 1))
    verdict = _verify(hub)
    assert (verdict["ok"], verdict["broken_at"]) == (False, end)


def test_checks_read_in_batches_find_the_same(hub, monkeypatch):
    monkeypatch.setattr(audit_log, "_BATCH", 2)
    researcher = hub.user("rita", "researcher")
    _projects(hub, researcher, 6)
    first = _verify(hub, full=True)
    assert first["ok"] and first["checked"]["to"] >= 7
    _projects(hub, researcher, 3)
    _edit(hub, first["checked"]["to"] + 2)
    assert _verify(hub)["broken_at"] == first["checked"]["to"] + 2
    _edit(hub, 3)
    assert _verify(hub, full=True)["broken_at"] == 3
