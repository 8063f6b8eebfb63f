"""The demo's ways in: fresh demo passwords, kept 0600, and instructions that name real files."""

import re
import stat

import pytest
from typer.testing import CliRunner

from flip.cli.app import app
from flip.config import SiteConfig
from flip.data.terminology.athena import starter_folder
from flip.demo.access import CREDENTIALS, RESEARCHER, DemoAccess, instructions, site_configs
from flip.hub.db import connect
from flip.signing import load_or_create_key
from flip.site.console.passwords import check, password_path


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    """An OUT as the demo leaves it: a hub database, two sites' configs, the credentials."""
    tmp_path = tmp_path_factory.mktemp("demo-out")
    connect(f"sqlite:///{tmp_path / 'hub.sqlite'}").dispose()
    load_or_create_key(tmp_path / "hub-signing.key")
    for site in ("riverside", "hilltop"):
        folder = tmp_path / "sites" / site
        folder.mkdir(parents=True)
        SiteConfig(name=site, store="store.duckdb", ledger="ledger.sqlite").save(
            folder / "site.yaml"
        )
    access = DemoAccess.new(list(site_configs(tmp_path)))
    access.set_console_passwords(site_configs(tmp_path))
    access.save(tmp_path)
    return tmp_path, access


def test_the_instructions_name_files_that_exist_and_the_demo_sign_ins(demo_out):
    out, access = demo_out
    text = instructions(out, access)
    paths = re.findall(rf"{re.escape(str(out))}[^\s:]*", text)
    assert len(paths) >= 5
    for path in paths:
        assert (out / path[len(str(out)) + 1 :]).exists(), path
    assert f"flip hub serve --db sqlite:///{out / 'hub.sqlite'}" in text
    assert f"flip demo --serve --no-run --out {out}" in text
    assert f"--vocabulary {starter_folder()}" in text, "the cohort builder searches concepts"
    assert f"sign in as {RESEARCHER} with the password {access.researcher_password}" in text
    for site, config in site_configs(out).items():
        name, password = access.consoles[site]
        assert f"flip site console --site-config {config}" in text
        assert f"sign in as {name} with the password {password}" in text
    assert "demo credentials" in text.lower()


def test_each_console_takes_its_demo_password_and_no_other(demo_out):
    out, access = demo_out
    for site, config in site_configs(out).items():
        name, password = access.consoles[site]
        passwords = password_path(SiteConfig.load(config).ledger)
        assert check(passwords, name, password)
        other = next(p for s, (_, p) in access.consoles.items() if s != site)
        assert not check(passwords, name, other)


def test_the_credentials_are_fresh_private_and_read_back(demo_out):
    out, access = demo_out
    assert stat.S_IMODE((out / CREDENTIALS).stat().st_mode) == 0o600
    assert DemoAccess.load(out) == access
    again = DemoAccess.new(list(access.consoles))
    assert again.researcher_password != access.researcher_password
    assert len(access.researcher_password) >= 12


def test_a_folder_without_a_demo_says_so(tmp_path):
    with pytest.raises(ValueError, match="run `flip demo --out"):
        DemoAccess.load(tmp_path)
    (tmp_path / CREDENTIALS).write_text("[]")
    with pytest.raises(ValueError, match="not a demo credentials file"):
        DemoAccess.load(tmp_path)


def test_serving_a_folder_without_a_demo_is_a_one_line_error(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--serve", "--no-run", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "no demo hub database" in result.output and "Traceback" not in result.output
    assert CliRunner().invoke(app, ["demo", "--no-run", "--out", str(tmp_path)]).exit_code == 2
