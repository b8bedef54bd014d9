"""The one exception type for mistakes a user can fix; the CLI prints it without a traceback."""


class GanctlError(Exception):
    """A problem with the user's input (config, files, checkpoint): the message says what and how to fix it."""
