"""The console's task decisions follow the site's policy as it is now."""

from __future__ import annotations

from flip.fl.tasks import mace_task
from flip.site.console.policy import change_policy
from tests.site.test_console import Site, hub  # noqa: F401 - the module's hub fixture


def test_a_task_the_policy_now_refuses_cannot_be_approved_in_the_console(hub, tmp_path):  # noqa: F811
    """After the policy changed to refuse a waiting task, its page says so and offers no
    Approve button, and approving it anyway is refused with 409 in words: nothing is
    recorded or told to the hub (as for analyses, `analysis_approvals.decide_analysis`)."""
    site = Site(hub, tmp_path)
    try:
        site.sign_in()
        spec = mace_task(0)
        pid, digest = site.propose(spec)
        assert site.ledger().decision(str(pid), digest) is None, "offered while allowed"
        change_policy(site.config, "dana", {"allowed_task_kinds": ["custom"]})
        form = f"/approvals/{pid}/{digest}"
        page = site.http.get(form).text
        assert "policy refuses this task" in page
        answer = site.post(form, {"decision": "approved", "reason": "ok"}, form)
        told = site.hub_decision(pid, digest)
        approved = site.ledger().is_approved(str(pid), digest)
        assert (answer.status_code, approved, told) == (409, False, None), "approved anyway"
        assert "policy refuses this task" in answer.text
        assert 'value="approved"' not in page, "no approve button for a task the policy refuses"
    finally:
        site.client.close()
