"""A hostile pickle for tests of weights loading."""


class Payload:
    """A pickle that writes `marker` if it is ever unpickled without weights_only."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))
