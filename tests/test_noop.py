"""Nothing pending costs nothing: a no-op upgrade is found before Alembic, a child or a Job
starts, in one line that is the same in every mode; and every case where the fast read cannot
be sure of Alembic's answer takes the full path (env.py then runs: it says so on stderr)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.conftest import NS, Project, Server
from tests.kubeapi.api import KubeAPIServer
from tests.test_k8s_jobs import as_jobs
from tests.test_ledger import ledger
from tests.test_user_project_migrations import staging
from tests.userproject import HEAD, UserProject

pytestmark = pytest.mark.e2e
pytest_plugins = ["tests.userproject"]

FIRST = "f2030d31309f"
SAID = f"Nothing to upgrade: {{database}} is at {FIRST} (head)."
RAN = "ENV_PY_RAN"


def marked(project: Project, *lines: str) -> None:
    """env.py says when it runs, and gets `lines` at its end (a place to name what must make
    the fast read stand aside)."""
    env_py = project.root / "migrations" / "env.py"
    text = env_py.read_text()
    env_py.write_text(f'import sys\nprint("{RAN}", file=sys.stderr)\n' + text + "\n".join(lines))


def test_a_no_op_upgrade_starts_no_alembic(
    project: Project, pg_server: Server, database: str
) -> None:
    assert project.inv("db.upgrade").code == 0
    rows = len(ledger(pg_server, database))
    marked(project)
    again = project.inv("db.upgrade")
    assert again.code == 0, again.output
    assert again.stderr.strip() == SAID.format(database=database)
    assert RAN not in again.stderr
    assert len(ledger(pg_server, database)) == rows  # the ledger records nothing for a no-op
    by_id = project.inv("db.upgrade", "-r", FIRST)
    assert by_id.stderr.strip() == SAID.format(database=database)


@pytest.mark.parametrize(
    ("case", "lines"),
    [
        ("version_table", ["# context.configure(version_table='other_versions')"]),
        ("version_table_schema", ["# context.configure(version_table_schema='other')"]),
        ("search_path", ["# connection.exec_driver_sql('SET search_path TO tenant')"]),
        ("a loop", ["for _tenant in ():", "    pass"]),
    ],
    ids=["version_table", "version_table_schema", "search_path", "loop"],
)
def test_an_env_py_that_may_keep_its_version_table_elsewhere_takes_the_full_path(
    project: Project, case: str, lines: list[str]
) -> None:
    assert project.inv("db.upgrade").code == 0
    marked(project, *lines)
    again = project.inv("db.upgrade")
    assert again.code == 0, again.output
    assert RAN in again.stderr and "Nothing to upgrade" not in again.stderr, case


def test_other_targets_heads_and_layouts_take_the_full_path(
    project: Project, pg_server: Server, database: str
) -> None:
    assert project.inv("db.upgrade").code == 0
    marked(project)
    for argv in (["-r", FIRST[:6]], ["-r", "heads"]):  # a partial id, a keyword
        again = project.inv("db.upgrade", *argv)
        assert again.code == 0, again.output
        assert RAN in again.stderr, argv

    # several rows in the version table (two heads recorded)
    project.branch_revision("b1b1b1b1b1b1", FIRST)
    project.branch_revision("b2b2b2b2b2b2", FIRST)
    assert project.inv("db.upgrade", "-r", "heads").code == 0
    project.inv("db.merge", "-m", "join", "--yes")
    both = project.inv("db.upgrade")
    assert both.code == 0 and RAN in both.stderr, both.output

    # several version locations: ast does not read that layout
    ini = project.root / "alembic.ini"
    ini.write_text(
        ini.read_text().replace(
            "[alembic]\n", "[alembic]\nversion_locations = %(here)s/migrations/versions\n", 1
        )
    )
    located = project.inv("db.upgrade")
    assert located.code == 0 and RAN in located.stderr, located.output


def test_several_heads_in_the_files_take_the_full_path(project: Project) -> None:
    assert project.inv("db.upgrade").code == 0
    project.branch_revision("b1b1b1b1b1b1", FIRST)
    project.branch_revision("b2b2b2b2b2b2", FIRST)
    marked(project)
    refused = project.inv("db.upgrade")
    assert refused.code == 1  # Alembic's own answer: several heads, merge them
    assert RAN in refused.stderr and "Nothing to upgrade" not in refused.stderr


@pytest.mark.parametrize("form", ["async", "settings"])
def test_a_projects_own_env_py_in_export_mode(
    user_project: Callable[..., UserProject], pg_server: Server, database: str, form: str
) -> None:
    project = user_project(form)
    staging(project, form, pg_server.url(database))
    assert project.inv("db.upgrade", "--env", "staging").code == 0
    again = project.inv("db.upgrade", "--env", "staging")
    assert again.code == 0, again.output
    assert again.stderr.strip() == f"Nothing to upgrade: {database} is at {HEAD} (head)."


# -- in the cluster -------------------------------------------------------------------------------


@pytest.fixture
def incluster(k8s: Project, pg_server: Server) -> Project:
    return as_jobs(k8s, pg_server)


def posted_jobs(kube: KubeAPIServer) -> int:
    return sum(
        1
        for method, target in kube.requests
        if method == "POST" and target.split("?")[0].endswith("/jobs")
    )


def test_in_the_cluster_nothing_pending_makes_no_job(
    incluster: Project, kube: KubeAPIServer, database: str
) -> None:
    assert incluster.inv("db.upgrade", "--env", NS).code == 0  # pending: a Job, as today
    assert posted_jobs(kube) == 1
    again = incluster.inv("db.upgrade", "--env", NS)
    assert again.code == 0, again.output
    assert SAID.format(database=database) in again.stderr
    assert posted_jobs(kube) == 1


def test_in_the_cluster_without_port_forwarding_the_job_decides(
    incluster: Project, kube: KubeAPIServer, pg_server: Server, database: str
) -> None:
    assert incluster.inv("db.upgrade", "--env", NS).code == 0
    kube.forbid("get", "secrets", NS)  # the tunnel's credentials: not for this user
    again = incluster.inv("db.upgrade", "--env", NS)
    assert again.code == 0, again.output
    assert posted_jobs(kube) == 2
    assert "Migration Job kubemigrate-staging-" in again.stderr
