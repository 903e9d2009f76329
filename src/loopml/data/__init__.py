"""Data: sources → validated, versioned Parquet datasets; contracts, quarantine, profiles, PII."""

from loopml.data.api import DataAPI as DataAPI
from loopml.data.contract import Contract as Contract
from loopml.data.ingest import IngestResult as IngestResult

__all__ = ["Contract", "DataAPI", "IngestResult"]
