"""An installed maild works: the wheel carries its rules, templates and migrations, as the systemd unit uses it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon_kit import write_config
from tests.factories import REPO

EXAMPLES = REPO / "examples"


def run(*command: str | Path, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True, check=False,
                          timeout=timeout, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    assert done.returncode == 0, f"{command}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment outside the repository with maild installed from its wheel."""
    base = tmp_path_factory.mktemp("install")
    source = base / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "maild", source / "maild", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", base / "dist", ".", cwd=source)
    wheels = sorted((base / "dist").glob("maild-*.whl"))
    assert len(wheels) == 1
    venv = base / "opt-maild"
    run(sys.executable, "-m", "venv", venv, cwd=base)
    run(venv / "bin" / "pip", "install", "--quiet", wheels[0], cwd=base, timeout=600)
    return venv


def test_an_installed_maild_checks_triages_renders_and_runs_from_its_state_directory(
        installed: Path, tmp_path: Path) -> None:
    """As the unit runs it: the configuration in etc/maild/, the working directory var/lib/maild/."""
    state = tmp_path / "var" / "lib" / "maild"
    inbox, sent = state / "mail" / "inbox", state / "mail" / "sent"
    for sub in ("new", "cur", "tmp"):
        (inbox / sub).mkdir(parents=True)
    config = tmp_path / "etc" / "maild" / "maild.toml"
    config.parent.mkdir(parents=True)
    write_config(config, mailbox={"kind": "maildir", "path": "mail/inbox"},
                 smtp={"kind": "maildir", "path": "mail/sent"}, database_url=f"sqlite:///{state / 'maild.db'}")
    maild = installed / "bin" / "maild"
    message = EXAMPLES / "01-quota-it.eml"

    check = run(maild, "check-config", "--config", config, cwd=state).stdout
    site = next(installed.glob("lib/python3*/site-packages"))
    assert f"rules      {site / 'maild' / 'defaults' / 'rules.toml'} (shipped with maild)" in check
    assert f"templates  {site / 'maild' / 'defaults' / 'templates'} (shipped with maild)" in check
    assert f"word model {site / 'maild' / 'defaults' / 'wordmodel.json'} (shipped with maild)" in check

    triage = run(maild, "triage", "--config", config, "--json", message, cwd=state).stdout
    assert '"decision": "accepted"' in triage and '"category": "anagrafica"' in triage

    reply = run(maild, "render", "--config", config, message, cwd=state).stdout
    assert "Subject: Re: " in reply and re.search(r"HD-\d{4}-000000", reply)

    for example in sorted(EXAMPLES.glob("*.eml")):
        shutil.copy(example, inbox / "new" / example.name)
    run(maild, "run", "--once", "--config", config, cwd=state)
    assert sorted((inbox / "new").iterdir()) == []
    answered = sorted((sent / "new").iterdir())
    # Every example but the out-of-office is answered; the spoofed request also gets the referente's notice.
    assert len(answered) == len(list(EXAMPLES.glob("*.eml")))
    assert (state / "maild.db").is_file()
