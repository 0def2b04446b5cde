"""The ledger's parts without a database: checksums, the comparison with the files, the facts
a Job is handed, the options added to env.py's `configure`, and the release's hint."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from kubemigrate.migrations import ledger, ledger_hook, provenance
from kubemigrate.migrations.ledger_check import EDITED, MISSING, UNKNOWN, problems
from kubemigrate.migrations.revisions import Graph
from kubemigrate.release.journal import Journal

AT = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def test_a_checksum_ignores_line_endings_only(tmp_path: Path) -> None:
    path = tmp_path / "rev.py"
    path.write_bytes(b"a = 1\nb = 2\n")
    lf = ledger.checksum(path)
    path.write_bytes(b"a = 1\r\nb = 2\r\n")
    assert ledger.checksum(path) == lf
    path.write_bytes(b"a = 1\nb = 3\n")
    assert ledger.checksum(path) != lf
    assert ledger.checksum(tmp_path / "gone.py") is None


def files(tmp_path: Path, **texts: str) -> Graph:
    """A linear graph a -> b -> c whose files hold `texts`."""
    parents = {"a": (), "b": ("a",), "c": ("b",)}
    paths = {}
    for revision in parents:
        paths[revision] = tmp_path / f"{revision}.py"
        paths[revision].write_text(texts.get(revision, revision))
    return Graph(parents, {r: f"doc {r}" for r in parents}, paths)


def row(revision: str, action: str, checksum: str | None) -> dict[str, Any]:
    return {
        "revision": revision,
        "action": action,
        "checksum": checksum,
        "finished_at": AT,
        "applied_by": "alice",
        "environment": "prod",
    }


def test_the_comparison_names_edited_missing_and_unknown(tmp_path: Path) -> None:
    graph = files(tmp_path)
    sums = {r: ledger.checksum(p) for r, p in graph.paths.items()}
    rows = [row("b", "upgrade", "0" * 64), row("a", "upgrade", sums["a"])]  # newest first
    found = problems(graph, ("c",), rows)
    assert [(p.kind, p.revision) for p in found] == [(EDITED, "b"), (UNKNOWN, "c")]

    # A revision the ledger says is applied, with no file: missing; downgraded first: not.
    rows = [row("z", "upgrade", "1" * 64), row("a", "upgrade", sums["a"])]
    assert [(p.kind, p.revision) for p in problems(graph, ("a",), rows)] == [(MISSING, "z")]
    rows = [row("z", "downgrade", "1" * 64), *rows]
    assert problems(graph, ("a",), rows) == []


def test_the_newest_accepting_row_decides(tmp_path: Path) -> None:
    graph = files(tmp_path)
    now = ledger.checksum(graph.paths["a"])
    old = [row("a", "upgrade", "0" * 64)]
    assert [p.kind for p in problems(graph, ("a",), old)] == [EDITED]
    assert problems(graph, ("a",), [row("a", "repair", now), *old]) == []
    assert problems(graph, ("a",), [row("a", "baseline", now)]) == []
    gone = [row("z", "repair", None), row("z", "upgrade", "1" * 64), row("a", "upgrade", now)]
    assert problems(graph, ("a",), gone) == []


def test_a_job_records_the_facts_of_the_task_that_started_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    given = provenance.Facts("alice (ci: bob)", "laptop", "prod", "0.0.1", "abc", "run1")
    monkeypatch.setenv(provenance.FACTS_VARIABLE, given.as_json())
    facts = provenance.collect("local", tmp_path)
    assert (facts.who, facts.environment, facts.commit, facts.run_id) == (
        "alice (ci: bob)",
        "prod",
        "abc",
        "run1",
    )
    assert facts.host != "laptop"  # the pod's own
    monkeypatch.setenv(provenance.FACTS_VARIABLE, "not json")
    assert provenance.collect("local", tmp_path).environment == "local"


def test_the_ci_actor_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(provenance.FACTS_VARIABLE, raising=False)
    for name in provenance.CI_ACTORS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GITHUB_ACTOR", "octocat")
    assert provenance.collect("ci", tmp_path).who.endswith("(ci: octocat)")


def test_configure_gets_the_callback_after_env_pys_own_and_the_filter() -> None:
    def theirs(**kw: Any) -> None: ...

    recorder = ledger_hook.Recorder(ledger.Table(), "local", "run")
    options: dict[str, Any] = {"on_version_apply": theirs, "include_name": lambda *a: True}
    ledger_hook.options(options, recorder)
    assert options["on_version_apply"] == [theirs, recorder]
    assert options["include_name"]("kubemigrate_history", "table", {}) is False
    assert options["include_name"]("user", "table", {}) is True
    alone: dict[str, Any] = {}
    ledger_hook.options(alone, None)
    assert "on_version_apply" not in alone and alone["include_name"]("x", "table", {})


def test_the_table_name_is_quoted() -> None:
    assert ledger.Table().sql == '"kubemigrate_history"'
    assert ledger.Table('we"ird').sql == '"we""ird"."kubemigrate_history"'


def test_the_release_hint_names_the_head_before_and_the_backup() -> None:
    journal = Journal()
    journal.record("backup", backup=Path("/b/app.dump"), environment="prod")
    journal.record("upgrade", before="abc123", environment="prod")
    note = journal.failure_note("deploy")
    assert note.startswith("deploy failed after: backup, upgrade. To take the database back")
    assert "(abc123): inv db.downgrade abc123 --env prod --yes" in note
    assert note.endswith(
        "; or to restore the database as it was before: inv db.restore /b/app.dump --env prod --yes"
    )
    assert "\n" not in note
    assert "db.downgrade base" in _note(before="")
    assert "db.downgrade" not in _note(before="a,b")  # two heads: no single target


def _note(before: str) -> str:
    journal = Journal()
    journal.record("upgrade", before=before, environment="prod")
    return journal.failure_note("verify")


def test_rows_as_json_are_plain(tmp_path: Path) -> None:
    from kubemigrate.migrations import ledger_views

    graph = files(tmp_path)
    found = [
        {
            **row("a", "upgrade", ledger.checksum(graph.paths["a"])),
            "heads_before": "",
            "heads_after": "a",
            "duration_ms": 1200,
        }
    ]
    shown = json.loads(ledger_views.as_json(found, graph))
    assert shown["rows"][0]["result"] == "ok" and shown["rows"][0]["heads_after"] == ["a"]
    assert ledger_views.duration(1200) == "1.2 s" and ledger_views.duration(17) == "17 ms"


def test_the_commit_and_author_are_read_from_gits_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess

    def git(*argv: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(tmp_path), *argv], capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    for name in ("GIT_AUTHOR_EMAIL", "GIT_AUTHOR_NAME"):
        monkeypatch.delenv(name, raising=False)
    assert provenance._commit(tmp_path) is None  # no checkout
    git("init", "-q", "-b", "main")
    git("config", "user.email", "dev@example.com")
    git("config", "user.name", "Dev")
    assert provenance._commit(tmp_path) is None  # no commit yet
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "f").write_text("x")
    git("add", "-A")
    git("commit", "-q", "-m", "one")
    assert provenance._commit(tmp_path / "sub") == git("rev-parse", "HEAD")
    git("pack-refs", "--all")
    assert provenance._commit(tmp_path) == git("rev-parse", "HEAD")
    git("checkout", "-q", "--detach")
    assert provenance._commit(tmp_path) == git("rev-parse", "HEAD")
    assert provenance._git_author(tmp_path) == "dev@example.com"
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "ci@example.com")
    assert provenance._git_author(tmp_path) == "ci@example.com"
