"""Progress the way docker shows it: one line per layer, redrawn in place on a terminal.

On a terminal each id (a layer's short digest) owns a line that is rewritten with its status
and a bar (``Downloading [=====>      ]  1.2MB/5MB``); elsewhere only changes of status are
printed, one line each, as docker does when its output is piped. Safe to call from the
threads that fetch layers in parallel.
"""

import _thread
import time

from berth.cli.output import human_size


def bar(current, total, width=50):
    """Docker's progress bar: ``[====>     ]  1.2MB/5MB``."""
    if not total:
        return f"{human_size(current)}"
    filled = min(width, int(width * current / total))
    arrow = "=" * (filled - 1) + ">" if filled else ""
    return f"[{arrow.ljust(width)}]  {human_size(current)}/{human_size(total)}"


class Progress:
    def __init__(self, stream, tty=None, min_interval=0.1):
        self.stream = stream
        if tty is None:
            try:
                tty = stream.isatty()
            except (AttributeError, ValueError):
                tty = False
        self.tty = tty
        self.min_interval = min_interval
        self._lock = _thread.allocate_lock()
        self._order = []       # ids in the order their lines were printed
        self._status = {}      # id -> last status word (for piped output)
        self._drawn = {}       # id -> time of the last redraw with a bar

    def message(self, text):
        """A line of its own, below the layer lines."""
        with self._lock:
            self.stream.write(text + "\n")
            if self.tty:
                # Lines printed after the layer lines end their in-place area.
                self._order.clear()
            self.stream.flush()

    def update(self, ident, status, current=None, total=None):
        with self._lock:
            if not self.tty:
                if self._status.get(ident) != status:
                    self._status[ident] = status
                    self.stream.write(f"{ident}: {status}\n")
                    self.stream.flush()
                return
            now = time.monotonic()
            if current is not None and self._status.get(ident) == status:
                if now - self._drawn.get(ident, 0) < self.min_interval and current != total:
                    return
            self._status[ident] = status
            self._drawn[ident] = now
            text = f"{ident}: {status}"
            if current is not None:
                text += " " + bar(current, total)
            if ident not in self._order:
                self._order.append(ident)
                self.stream.write(text + "\n")
            else:
                up = len(self._order) - self._order.index(ident)
                self.stream.write(f"\x1b[{up}A\x1b[2K\r{text}\x1b[{up}B\r")
            self.stream.flush()


from berth.images.progress import Quiet  # noqa: E402,F401 - what -q uses
