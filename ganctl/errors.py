"""How ganctl ends when it cannot go on: the one exception type for mistakes a user can fix (the CLI
prints it without a traceback), and the exit codes of the signals that stop a run."""


class GanctlError(Exception):
    """A problem with the user's input (config, files, checkpoint): the message says what and how to fix it."""


# A run stopped by a signal exits as a shell reports a process killed by it: 128 + the signal's number.
EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143, "SIGUSR2": 140}
