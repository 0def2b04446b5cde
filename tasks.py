"""Tasks of this project: `inv --list` shows them. The logic lives in the kubemigrate package."""

from kubemigrate.tasks import namespace

ns = namespace
