"""Every ``dbp`` command reads its settings the same way (``dbp.cli_settings``): an invalid one — here a database
URL of a kind dbp does not support — is a one-line error and a non-zero exit, never a traceback."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from dbp.cli import app as cli


@pytest.mark.parametrize(("args", "code"), [
    (["qr", "urn:uuid:x"], 2), (["audit-log", "verify"], 1), (["db", "upgrade"], 2),
    (["export", "-o", "/dev/null"], 2),
])
def test_unsupported_database_urls_are_refused_with_the_configuration_error(
        args: list[str], code: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBP_DATABASE_URL", "nonsense://somewhere/db")
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == code, result.output
    assert "invalid configuration" in result.output and "database_url" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
