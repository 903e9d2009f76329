"""Stores: the metadata database and the artifact store, each with backends by URL scheme."""

from loopml.store.artifacts import (
    ARTIFACT_BACKENDS as ARTIFACT_BACKENDS,
)
from loopml.store.artifacts import (
    ArtifactStore as ArtifactStore,
)
from loopml.store.artifacts import (
    file_sha256 as file_sha256,
)
from loopml.store.artifacts import (
    open_artifacts as open_artifacts,
)
from loopml.store.metadata import (
    METADATA_BACKENDS as METADATA_BACKENDS,
)
from loopml.store.metadata import (
    MetadataStore as MetadataStore,
)
from loopml.store.metadata import (
    open_metadata as open_metadata,
)

__all__ = [
    "ARTIFACT_BACKENDS",
    "METADATA_BACKENDS",
    "ArtifactStore",
    "MetadataStore",
    "file_sha256",
    "open_artifacts",
    "open_metadata",
]
