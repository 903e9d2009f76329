"""loopml: the whole ML cycle in one pip install, governed and fast.

>>> import loopml
>>> ws = loopml.open("./ws")
>>> result = ws.ingest("transactions", "data/tx.csv", contract="contracts/tx.yaml")
"""

from loopml.errors import AccessDenied as AccessDenied
from loopml.errors import Conflict as Conflict
from loopml.errors import ContractViolation as ContractViolation
from loopml.errors import GateFailed as GateFailed
from loopml.errors import InputError as InputError
from loopml.errors import IntegrityError as IntegrityError
from loopml.errors import LoopMLError as LoopMLError
from loopml.errors import NotFound as NotFound
from loopml.errors import SpecError as SpecError
from loopml.errors import StoreError as StoreError
from loopml.errors import UserCodeError as UserCodeError
from loopml.workspace import Workspace as Workspace
from loopml.workspace import open as open

__version__ = "0.1.0"

__all__ = [
    "AccessDenied",
    "Conflict",
    "ContractViolation",
    "GateFailed",
    "InputError",
    "IntegrityError",
    "LoopMLError",
    "NotFound",
    "SpecError",
    "StoreError",
    "UserCodeError",
    "Workspace",
    "__version__",
    "open",
]
