"""Typed errors whose message is written for a human (a CLI user or a Discord user).

Callers show ``str(error)`` as is: no traceback, no internals, no secrets.
"""


class NSTError(Exception):
    """Base class: every refusal the engine makes for a reason a user can fix."""


class ParamError(NSTError, ValueError):
    """A parameter is out of range or of the wrong type; ``field`` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


class ImageError(NSTError, ValueError):
    """An image cannot be used: not an image, truncated, too large, ..."""


class WeightsError(NSTError):
    """VGG-19 weights are missing, unreachable or do not match the network."""


class Cancelled(NSTError):
    """The caller's ``should_stop`` asked the optimisation to stop."""

    def __init__(self, step: int, total: int):
        super().__init__(f"cancelled after {step} of {total} steps")
        self.step = step
        self.total = total
