"""The one base class of every error evoq raises on purpose.

Each error evoq raises for bad input, a bad environment or a state it cannot go on from is an
:class:`EvoqError`; its ``str()`` is one line a user can act on. Callers dispatch on the type
(the CLI turns any ``EvoqError`` into a one-line message and exit 2; ``evoq audit`` maps the
codec's subclasses to finding kinds), never on the text of a message.

The subclasses live beside the code that raises them (``evoq.codec.CodecError``,
``evoq.space.SpaceError``, ``evoq.spec.SpecError``, ``evoq.reducer.InvalidLogError``,
``evoq.loader.TrialLoadError``, ``evoq.controller.ControllerError``, ...). Most of them are also
``ValueError``s, so code written against the standard exceptions keeps working.
"""

from __future__ import annotations


class EvoqError(Exception):
    """Base class of evoq's errors: the message is one line that names the problem."""
