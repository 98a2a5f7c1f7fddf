"""The command line's conventions, applied when a command runs and never on import: domain
errors print as the HTTP API's JSON on stderr with a non-zero exit code (a Ctrl-C as
``{"errors": {<command>: "interrupted"}}`` and 130, as shells report it); an answer may carry
its own exit code (build's, when it refused files); and options may be spelled with dashes
(``--largest-face``) as well as hug's underscores (``--largest_face``)."""

from __future__ import annotations

import json
import sys
from typing import Callable

import hug

from ..config import ConfigError
from ..errors import RecognizerError

# The command running in this process, if any (what a server says at start-up, a command
# does not).
running: str | None = None


class Command(hug.interface.CLI):
    """A hug CLI command with those conventions."""

    def __init__(self, route: dict, function: Callable) -> None:
        super().__init__(route, function)
        self.name = route.get("name", function.__name__)

    def __call__(self):
        global running
        sys.excepthook = _print_errors(self.name)
        sys.argv = undashed(sys.argv, self.interface.parameters)
        self.answer, running = None, self.name
        try:
            output = super().__call__()
        finally:
            running = None
        if getattr(self.answer, "exit_code", 0):  # printed: now say that it reports a failure
            raise AnsweredExit(self.answer.exit_code, self.answer)
        return output

    def output(self, data, context):
        """Print the answer (kept: one with an ``exit_code``, build's report, sets it)."""
        self.answer = data
        return super().output(data, context)


class AnsweredExit(SystemExit):
    """The exit of a command that printed its answer and reports a failure with its status;
    the answer rides along for a caller in the same process (hug.test.cli's)."""

    def __init__(self, code: int, answer: object) -> None:
        super().__init__(code)
        self.answer = answer


class Commands(hug.routing.CLIRouter):
    """``hug.cli``, making :class:`Command` commands."""

    def __call__(self, api_function: Callable) -> Callable:
        Command(self.route, api_function)
        return api_function


def undashed(argv: list[str], parameters) -> list[str]:
    """argv with ``--an-option`` spelled ``--an_option`` for each of the command's parameters
    (up to a bare ``--``, after which everything is an argument)."""
    spelled = {"--" + name.replace("_", "-"): "--" + name for name in parameters if "_" in name}
    words, rest = list(argv), len(argv)
    if "--" in words:
        rest = words.index("--")
    for index, word in enumerate(words[:rest]):
        option, equals, value = word.partition("=")
        if option in spelled:
            words[index] = spelled[option] + equals + value
    return words


def _print_errors(command: str) -> Callable:
    def excepthook(kind, error, trace):
        """Domain and configuration errors print as JSON, not a traceback."""
        if isinstance(error, KeyboardInterrupt):
            sys.stderr.write(json.dumps({"errors": {command: "interrupted"}}) + "\n")
            raise SystemExit(130)  # 128 + SIGINT
        if isinstance(error, RecognizerError):
            sys.stderr.write(json.dumps(error.as_body()) + "\n")
            raise SystemExit(1)
        if isinstance(error, ConfigError):
            sys.stderr.write(json.dumps({"errors": {"config": str(error)}}) + "\n")
            raise SystemExit(1)
        sys.__excepthook__(kind, error, trace)

    return excepthook


def run(api: hug.API) -> None:
    """The ``facerec`` command: an API's commands, with their errors as JSON from the start
    (reading the settings comes before any command)."""
    sys.excepthook = _print_errors("facerec")
    api.cli()
