"""Storage: engines, the unit of work, column types, migrations."""

from tallybook.db.base import Base
from tallybook.db.tx import Database, Tx
from tallybook.db.types import DecimalType, JSONType, UTCDateTime

__all__ = ["Base", "Database", "DecimalType", "JSONType", "Tx", "UTCDateTime"]
