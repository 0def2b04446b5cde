"""Kubernetes, always through the user's own kubectl: lookups and its errors (`kubectl`),
`kubectl port-forward` (`tunnel`), reaching the database in the cluster (`reach`), and the
migration Job: its manifest (`job_manifest`), running and following it (`jobs`), listing them
(`job_list`), and as Helm or Argo CD hooks with the replicas' init container (`job_hooks`).

Imports: the layers below it; in fact `process` alone, kubectl being a program like any other
(the database's pod is reached by `postgres.clients` through a kubectl it is handed).
"""
