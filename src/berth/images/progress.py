"""How the image side reports progress: an object with ``message(text)`` and
``update(ident, status, current=None, total=None)``. The CLI draws it (berth.cli.progress);
``Quiet`` drops it."""


class Quiet:
    def message(self, text):
        pass

    def update(self, ident, status, current=None, total=None):
        pass
