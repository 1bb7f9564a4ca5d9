"""The one exception type the CLI reports as a plain message (no traceback): the user can fix its cause."""


class SurgvqaError(Exception):
    """A problem with the user's input, data or params; the message says what is wrong and how to fix it."""
