"""A stand-in simulator for the sweep tests: its worker process dies the first time it runs."""
import os


class Crashy:
    def __init__(self, p):
        self.marker = os.path.join(p["OUT_DIR"], "crashed_once")

    def cross_validate(self, p):
        if not os.path.exists(self.marker):
            os.makedirs(p["OUT_DIR"], exist_ok=True)
            open(self.marker, "w").close()
            os._exit(1)                       # the worker dies mid-task
        return [[1.0, 0.5]], [0.0]
