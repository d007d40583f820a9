"""Persistence: SQLAlchemy 2 models and the database session factory."""

from ledger.store.db import Database
from ledger.store.models import ApiKey, Base, Batch, Device, DeviceKeyRecord, Organisation, Reading

__all__ = ["ApiKey", "Base", "Batch", "Database", "Device", "DeviceKeyRecord", "Organisation", "Reading"]
