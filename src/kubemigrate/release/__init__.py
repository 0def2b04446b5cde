"""The release's steps: backups and restores (`backups`, `backup_files`), `db.verify`'s checks
(`checks`), `kubectl apply` and the rollout (`rollout`), what this invocation did (`journal`),
and the steps with their gates, shared by every form of the release (`steps`).

Imports: `review`, `migrations` and the layers below.
"""
