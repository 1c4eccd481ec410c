"""evoq: regularized (aging) evolution over real training jobs, driven by an event log.

The pure core — :mod:`evoq.space`, :mod:`evoq.strategy`, :mod:`evoq.events`, :mod:`evoq.codec`,
:mod:`evoq.reducer`, :mod:`evoq.proposal` — touches no Redis, no clock and no global random
state. :mod:`evoq.log` holds the local log backends.
"""

__version__ = "0.1.0"

from .codec import CodecError, CorruptRecordError, UnknownEventError, UnsupportedVersionError, decode, encode
from .events import (
    ExperimentCreated,
    ExperimentFinished,
    TrialCompleted,
    TrialFailed,
    TrialStarted,
    TrialSubmitted,
)
from .filelog import FileLog
from .log import EventLog, MemoryLog, read_events
from .proposal import Proposal, propose
from .reducer import State, StateBuilder, apply, replay
from .space import SearchSpace, SpaceError
from .strategy import Strategy

__all__ = [
    "CodecError",
    "CorruptRecordError",
    "EventLog",
    "ExperimentCreated",
    "ExperimentFinished",
    "FileLog",
    "MemoryLog",
    "Proposal",
    "SearchSpace",
    "SpaceError",
    "State",
    "StateBuilder",
    "Strategy",
    "TrialCompleted",
    "TrialFailed",
    "TrialStarted",
    "TrialSubmitted",
    "UnknownEventError",
    "UnsupportedVersionError",
    "__version__",
    "apply",
    "decode",
    "encode",
    "propose",
    "read_events",
    "replay",
]
