"""Local exe-unit harness: runs ClassifierService's real scripts without the Golem network.

See ``engine.py`` (yapapi's real ServiceRunner and Cluster on a local engine) and
``exeunit.py`` (the exe-script interpreter and fault injection).
"""

from .engine import LocalCluster, LocalEngine, LocalJob, LocalRuntime
from .exeunit import REPO_ROOT, Fault, FaultPlan, LocalActivity
from .storage import LocalStorageProvider

__all__ = [
    "REPO_ROOT",
    "Fault",
    "FaultPlan",
    "LocalActivity",
    "LocalCluster",
    "LocalEngine",
    "LocalJob",
    "LocalRuntime",
    "LocalStorageProvider",
]
