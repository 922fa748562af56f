"""mltelemetry.workload: the workload generator (campaigns of scenarios) and the annotation API.

``Annotator`` is the public API for users' own training scripts (see :mod:`.instrument`).
"""

from mltelemetry.workload.instrument import Annotator

__all__ = ["Annotator"]
