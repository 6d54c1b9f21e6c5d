"""Text from elsewhere made safe to show on a terminal.

Whatever the CLI prints may come from the server (product names, SKUs, reasons, error messages), that
is from any member of the tenant. A terminal obeys the control characters in what it shows: ``ESC ]0;``
sets its title, ``ESC ]52;`` writes the clipboard, ``ESC [2J`` clears the screen, and a C1 ``CSI``
(``\\x9b``) does the same on some terminals. Bidirectional overrides reorder what is shown, so a name
can read as something it is not. Each such character is shown as its escape (``\\x1b``, ``\\u202e``)
instead: visible, inert, and unambiguous about what the server holds (``--json`` gives it exactly).

Standard library only: the commands that stay local load this module too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import logging

_BIDI = (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
"""Arabic letter mark, LRM, RLM, the embeddings and overrides, and the isolates."""

_SEPARATORS = (0x2028, 0x2029)
"""Unicode's line and paragraph separators: some terminals and pagers break lines on them."""

_ESCAPES = {
    code: (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    for code in (*range(0x00, 0x20), *range(0x7F, 0xA0), *_BIDI, *_SEPARATORS)
}
"""Every C0 control (tab and newline too: a field's own would forge columns or lines), DEL, every C1
control, the bidirectional controls and the separators, each to its escape."""

_KEEP_LAYOUT = {code: escape for code, escape in _ESCAPES.items() if chr(code) not in "\n\t"}


def printable(text: object) -> str:
    """``text`` (``str()`` of it) with every control character escaped: one inert line."""
    return str(text).translate(_ESCAPES)


def printable_lines(text: str) -> str:
    """``text`` with every control character escaped but the newlines and tabs that lay it out: for
    whole lines the CLI put together (each field already :func:`printable`) or a traceback."""
    return text.translate(_KEEP_LAYOUT)


def printable_log_handler() -> logging.Handler:
    """A handler writing to stderr (whichever it is when a record comes), warnings and worse, as Python's
    last-resort one does, but each line :func:`printable_lines`: a logged message or exception may quote
    the server."""
    import logging
    import sys

    class PrintableHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                sys.stderr.write(printable_lines(self.format(record)) + "\n")
            except Exception:  # as every logging handler: a failure to log never breaks the program
                self.handleError(record)

    return PrintableHandler(logging.WARNING)
