"""Releases in two phases, end to end: revisions declared post-deploy run after the rollout;
the plan refuses a pre-deploy revision the running code does not survive; replicas wait for
the schema (`db.await`, `python -m kubemigrate await`); the hook manifests for Helm and Argo
CD; each phase as its own Job, in the order the test API server records."""

from __future__ import annotations

import json
import re
import sys
import time

import pytest
import yaml

from kubemigrate.migrations.phases import Split, awaited, split
from kubemigrate.migrations.revisions import Graph
from tests.conftest import NS, Project, Server, run
from tests.kubeapi.api import KubeAPIServer
from tests.test_k8s_jobs import as_jobs, kubectl, version

pytestmark = pytest.mark.e2e

FIRST = "f2030d31309f"
EXPAND, CONTRACT, LATER = "e1e1e1e1e1e1", "c2c2c2c2c2c2", "d3d3d3d3d3d3"


def post_deploy(project: Project, revision: str) -> None:
    path = project.versions / f"{revision}.py"
    path.write_text(path.read_text() + '\n\nphase = "post"\n')


def three_phases(project: Project) -> None:
    """FIRST <- EXPAND (adds a column) <- CONTRACT (post: drops one) <- LATER (adds a table)."""
    project.add_revision(
        EXPAND,
        FIRST,
        "op.add_column('book', sa.Column('subtitle', sa.String(), nullable=True))",
        downgrade=("op.drop_column('book', 'subtitle')",),
    )
    project.add_revision(
        CONTRACT,
        EXPAND,
        "op.drop_column('book', 'subtitle')",
        downgrade=("op.add_column('book', sa.Column('subtitle', sa.String(), nullable=True))",),
    )
    post_deploy(project, CONTRACT)
    project.add_revision(
        LATER,
        CONTRACT,
        'op.execute("CREATE TABLE later (id int)")',
        downgrade=('op.execute("DROP TABLE later")',),
    )


# -- the split, without a database ----------------------------------------------------------------


def graph(phases: dict[str, str]) -> Graph:
    parents = {"a": (), "b": ("a",), "c": ("b",), "d": ("c",), "e": ("d",)}
    return Graph(parents, phases=phases)


def test_the_pending_revisions_split_by_phase() -> None:
    found = split(graph({"c": "post", "e": "post"}), ("a",))
    assert found == Split(pre=["b"], post=["c"], waiting=["d", "e"])
    assert found.target("pre") == "b" and found.target("post") == "c"
    assert split(graph({}), ()) == Split(pre=["a", "b", "c", "d", "e"])
    assert split(graph({"b": "post", "c": "post"}), ("a",)) == Split([], ["b", "c"], ["d", "e"])
    with pytest.raises(Exception, match='write "pre" or "post"'):
        split(graph({"b": "later"}), ("a",))


def test_a_replica_waits_for_the_pre_deploy_revisions_only() -> None:
    revisions = graph({"c": "post"})
    assert not awaited(revisions, ("a",))
    assert awaited(revisions, ("b",))  # c is post-deploy: the new code survives without it
    assert awaited(revisions, ("e",))
    assert awaited(revisions, ("ffffffffffff",))  # a newer release's database


def test_divergent_pending_heads_are_refused() -> None:
    branched = Graph({"a": (), "b": ("a",), "c": ("a",)})  # two pending heads, both pre
    with pytest.raises(Exception, match="not in one line"):
        split(branched, ("a",))


# -- through the tasks ----------------------------------------------------------------------------


def test_db_revision_post_writes_the_marker(project: Project) -> None:
    written = project.inv("db.revision", "drop book.subtitle", "--post", "--no-autogenerate")
    assert written.code == 0, written.output
    (path,) = project.versions.glob("*drop_book_subtitle.py")
    text = path.read_text()
    assert 'phase = "post"' in text
    compile(text, str(path), "exec")
    plan = json.loads(project.inv("db.plan", "--format", "json").stdout)
    assert [r["phase"] for r in plan["revisions"]] == ["pre", "post"]


def test_an_upgrade_with_phases_stops_before_the_post_deploy_revision(
    project: Project, pg_server: Server, database: str
) -> None:
    three_phases(project)
    project.write_env("", KUBEMIGRATE_PHASES="true")
    pre = project.inv("db.upgrade")
    assert pre.code == 0, pre.output
    assert version(pg_server, database) == EXPAND
    assert f"left for after the rollout (post-deploy): {CONTRACT}" in pre.stderr
    assert f"waiting for the next release (they follow a post-deploy revision): {LATER}" in (
        pre.stderr
    )
    between = project.inv("db.verify")
    assert between.code == 0, between.output
    assert f"post-deploy pending: {CONTRACT}" in between.stdout
    post = project.inv("contract")
    assert post.code == 0, post.output
    assert version(pg_server, database) == CONTRACT
    nothing = project.inv("db.upgrade", "--post")
    assert nothing.code == 0 and "No post-deploy revision to apply" in nothing.stderr
    assert project.inv("db.upgrade").code == 0  # the next release: LATER, before its rollout
    assert version(pg_server, database) == LATER


def test_without_phases_an_upgrade_applies_everything(
    project: Project, pg_server: Server, database: str
) -> None:
    three_phases(project)
    done = project.inv("db.upgrade")
    assert done.code == 0, done.output
    assert version(pg_server, database) == LATER
    assert "Phases" not in done.stderr


def test_the_plan_refuses_a_pre_deploy_drop_on_a_protected_environment(
    project: Project, pg_server: Server, database: str
) -> None:
    project.write_env("prod", KUBEMIGRATE_PROTECTED="true")
    assert project.inv("db.upgrade", "--env", "prod").code == 0
    project.add_revision(
        EXPAND,
        FIRST,
        "op.drop_column('book', 'title')",
        downgrade=("op.add_column('book', sa.Column('title', sa.String(), nullable=True))",),
    )
    refused = project.inv("db.upgrade", "--env", "prod")
    assert refused.code == 1, refused.output
    assert f"lint: {EXPAND}: pre-deploy-breaks-running-code:" in refused.stderr
    assert 'mark it `phase = "post"`, or split it' in refused.stderr
    assert version(pg_server, database) == FIRST

    post_deploy(project, EXPAND)
    plan = json.loads(project.inv("db.plan", "--env", "prod", "--format", "json").stdout)
    (planned,) = plan["revisions"]
    assert planned["phase"] == "post"
    assert not [f for f in planned["findings"] if f["severity"] == "error"], planned
    assert project.inv("db.upgrade", "--env", "prod").code == 0  # pre phase: nothing
    assert version(pg_server, database) == FIRST
    assert project.inv("db.upgrade", "--env", "prod", "--post").code == 0
    assert version(pg_server, database) == EXPAND


def test_a_post_deploy_revision_that_adds_is_a_warning(project: Project) -> None:
    project.add_revision(EXPAND, FIRST, 'op.execute("CREATE TABLE extra (id int)")')
    post_deploy(project, EXPAND)
    project.write_env("", KUBEMIGRATE_PHASES="true")
    plan = json.loads(project.inv("db.plan", "--format", "json").stdout)
    rules = [(f["rule"], f["severity"]) for f in plan["revisions"][-1]["findings"]]
    assert ("post-deploy-adds", "warning") in rules
    markdown = project.inv("db.plan", "--format", "markdown").stdout
    assert "| phase |" in markdown and "post-deploy" in markdown


def test_await_returns_once_the_pre_deploy_head_lands(
    project: Project, pg_server: Server, database: str
) -> None:
    project.add_revision(
        EXPAND,
        FIRST,
        'op.execute("CREATE TABLE slow (id int)")',
        'op.execute("SELECT pg_sleep(2)")',
    )
    assert project.inv("db.upgrade", "-r", FIRST).code == 0
    upgrade = project.popen("db.upgrade")
    waiting = project.popen("db.await", "--timeout", "60")
    _, upgraded_err = upgrade.communicate(timeout=120)
    landed = time.monotonic()
    out, err = waiting.communicate(timeout=120)
    assert upgrade.returncode == 0, upgraded_err
    assert waiting.returncode == 0, err
    assert "Waiting for the schema: the database is at f2030d31309f" in err
    assert EXPAND in out
    assert version(pg_server, database) == EXPAND
    # it polls: it ended after the upgrade committed (its exit is the bench's to time)
    assert time.monotonic() >= landed


def test_await_gives_up_with_one_line(project: Project) -> None:
    project.add_revision(EXPAND, FIRST, 'op.execute("SELECT 1")')
    assert project.inv("db.upgrade", "-r", FIRST).code == 0
    module = run(
        [sys.executable, "-m", "kubemigrate", "await", "--timeout", "0.5"],
        cwd=project.root,
        env=project.env,
    )
    assert module.code == 1
    (line,) = [line for line in module.stderr.splitlines() if line.startswith("error:")]
    assert f"it is at {FIRST}, with {EXPAND} to run before the rollout" in line
    assert "raise --timeout" in line


# -- in the cluster -------------------------------------------------------------------------------


@pytest.fixture
def phased_cluster(k8s: Project, pg_server: Server) -> Project:
    """The k8s project, `staging` with phases and its migrations as Jobs that reach the test's
    PostgreSQL directly."""
    return as_jobs(k8s, pg_server, KUBEMIGRATE_PHASES="true", KUBEMIGRATE_DEPLOYMENTS="web")


def two_phase_revisions(project: Project) -> None:
    project.add_revision(EXPAND, FIRST, 'op.execute("CREATE TABLE expand (id int)")')
    project.add_revision(CONTRACT, EXPAND, 'op.execute("DROP TABLE expand")')
    post_deploy(project, CONTRACT)


def kind(request: tuple[str, str]) -> str | None:
    """A request the test API server recorded, as a step of the release: a Job created, or
    the Deployment applied."""
    method, target = request
    path = target.split("?")[0]
    if method == "POST" and path.endswith("/jobs"):
        return "job"
    if method in ("POST", "PATCH") and "/deployments" in path:
        return "apply"
    return None


def test_a_release_runs_pre_then_the_rollout_then_post(
    phased_cluster: Project, kube: KubeAPIServer, pg_server: Server, database: str
) -> None:
    two_phase_revisions(phased_cluster)
    result = phased_cluster.inv("release", "--env", NS)
    assert result.code == 0, result.output
    assert version(pg_server, database) == CONTRACT
    steps = [step for step in map(kind, kube.requests) if step]
    assert steps[0] == "job" and steps[-1] == "job", steps
    assert steps.index("apply") > 0 and steps.count("job") == 2
    created = [m.start() for m in re.finditer(r"Migration Job \S+ created", result.stderr)]
    assert len(created) == 2, result.stderr
    assert created[0] < result.stderr.index("successfully rolled out") < created[1]


def test_a_failed_rollout_leaves_the_post_deploy_revision_pending(
    phased_cluster: Project, kube: KubeAPIServer, pg_server: Server, database: str
) -> None:
    two_phase_revisions(phased_cluster)
    kube.auto_rollout = False
    result = phased_cluster.inv("release", "--env", NS, KUBEMIGRATE_ROLLOUT_TIMEOUT="2")
    assert result.code == 1, result.output
    assert "did not finish rolling out within 2s" in result.stderr
    assert version(pg_server, database) == EXPAND
    assert "inv db.restore" in result.stderr  # the hint the release gives today


@pytest.mark.parametrize("hook", ["helm", "argo"])
def test_the_hook_manifests_apply(phased_cluster: Project, hook: str) -> None:
    shown = phased_cluster.inv("db.job-manifest", "--hook", hook, "--env", NS)
    assert shown.code == 0, shown.output
    jobs = [doc for doc in yaml.safe_load_all(shown.stdout) if doc]
    assert [job["metadata"]["name"] for job in jobs] == [
        "kubemigrate-staging-migrate",
        "kubemigrate-staging-contract",
    ]
    annotations = [job["metadata"]["annotations"] for job in jobs]
    if hook == "helm":
        assert annotations[0]["helm.sh/hook"] == "pre-install,pre-upgrade"
        assert annotations[1]["helm.sh/hook-delete-policy"] == "before-hook-creation"
    else:
        assert [a["argocd.argoproj.io/hook"] for a in annotations] == ["PreSync", "PostSync"]
    for job in jobs:
        assert job["spec"]["backoffLimit"] == 0 and job["spec"]["activeDeadlineSeconds"] > 0
    commands = [job["spec"]["template"]["spec"]["containers"][0]["command"] for job in jobs]
    assert [c[-4:] for c in commands] == [
        ["--phase", "pre", "--", "head"],
        ["--phase", "post", "--", "head"],
    ]
    snippet = shown.stdout[shown.stdout.index("# Replicas that wait") :].splitlines()
    assert all(line.startswith("#") for line in snippet)
    assert "# - name: kubemigrate-await" in snippet
    assert "#   - await" in snippet and "#   - --timeout" in snippet
    applied = kubectl(phased_cluster, "apply", "--dry-run=client", "-f", "-", stdin=shown.stdout)
    assert applied.returncode == 0, applied.stderr
    assert "created (dry run)" in applied.stdout


def test_a_protected_environment_without_phases_is_gated_as_before(
    project: Project, pg_server: Server, database: str
) -> None:
    from tests.test_safety import add_unsafe_revision

    assert project.inv("db.upgrade").code == 0
    add_unsafe_revision(project)
    refused = project.inv("db.upgrade", KUBEMIGRATE_PROTECTED="true", KUBEMIGRATE_PHASES="false")
    assert refused.code == 1
    assert "is protected and 3 pending operation(s) are unsafe" in refused.stderr
    assert "pre-deploy-breaks-running-code" not in refused.stderr
