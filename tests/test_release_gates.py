"""A gate added to a release step holds in every form of the release: `inv release`,
`inv db.backup db.upgrade db.verify deploy` and `inv backup migrate verify deploy` run the same
step functions. On a protected environment the lint runs before the backup, so a refused
release changes nothing and writes no backup."""

import pytest

from tests.conftest import Project, Server
from tests.test_safety import add_unsafe_revision, version

pytestmark = pytest.mark.e2e

CHAINED = ["db.backup", "db.upgrade", "db.verify", "deploy"]
SHORT = ["backup", "migrate", "verify", "deploy"]
# squawk's three findings, and the pre-deploy revision that breaks the running code (phases
# are on where an environment is protected).
REFUSAL = "error: prod is protected and 4 pending operation(s) are unsafe"


def with_env(tasks: list[str]) -> list[str]:
    return [word for name in tasks for word in (name, "--env", "prod")]


@pytest.mark.parametrize(
    ("argv", "environ"),
    [
        (["release", "--env", "prod"], {}),
        (with_env(CHAINED), {}),
        (SHORT, {"KUBEMIGRATE_ENV": "prod"}),
        (["db.backup", "--env", "prod", "db.upgrade"], {"KUBEMIGRATE_ENV": "prod"}),
    ],
    ids=["release", "chained", "short-names", "env-named-once"],
)
def test_every_form_of_the_release_refuses_before_the_backup(
    project: Project, pg_server: Server, database: str, argv: list[str], environ: dict[str, str]
) -> None:
    assert project.inv("db.upgrade").code == 0
    parent = add_unsafe_revision(project)
    project.write_env("prod", KUBEMIGRATE_PROTECTED="true")

    refused = project.inv(*argv, **environ)

    assert refused.code == 1, refused.output
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(REFUSAL), refused.output
    assert "lint: 0badc0ffee00: adding-required-field" in refused.stderr
    assert "Traceback" not in refused.output
    assert version(pg_server, database) == parent
    assert not list(project.root.glob("backups/**/*.dump")), "a refused release wrote a backup"


def test_a_forced_chain_backs_up_and_migrates(
    project: Project, pg_server: Server, database: str
) -> None:
    assert project.inv("db.upgrade").code == 0
    add_unsafe_revision(project)
    project.write_env("prod", KUBEMIGRATE_PROTECTED="true")
    done = project.inv("db.backup", "--env", "prod", "db.upgrade", "--env", "prod", "--force")
    assert done.code == 0, done.output
    assert version(pg_server, database) == "0badc0ffee00"
    assert len(list(project.root.glob("backups/prod/*.dump"))) == 1


def test_a_backup_alone_on_a_protected_environment_is_not_gated(project: Project) -> None:
    assert project.inv("db.upgrade").code == 0
    add_unsafe_revision(project)
    project.write_env("prod", KUBEMIGRATE_PROTECTED="true")
    done = project.inv("db.backup", "--env", "prod")
    assert done.code == 0, done.output
    assert len(list(project.root.glob("backups/prod/*.dump"))) == 1
