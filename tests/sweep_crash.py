"""Stand-in simulators for the sweep tests (no ``validate``: their p is taken as given)."""
import os


class Crashy:
    """Its worker process dies the first time it runs (p["MARKER"]: a file outside the task's
    folder that says it already died once), leaving a partial file in its folder."""

    def __init__(self, p):
        self.marker = p["MARKER"]

    def cross_validate(self, p):
        if not os.path.exists(self.marker):
            open(self.marker, "w").close()
            with open(os.path.join(p["OUT_DIR"], "partial_result.txt"), "w") as f:
                f.write("half an epoch\n")
            os._exit(1)                       # the worker dies mid-task
        return [[1.0, 0.5]], [0.0]


class Steady:
    """Returns p["ACCURACY"] at once, or raises when p["FAIL"] is set."""

    def __init__(self, p):
        self.accuracy = p.get("ACCURACY", 0.5)

    def train_test(self, p):
        if p.get("FAIL"):
            raise RuntimeError("FAIL was set: this task fails")
        return None, None, None, None, 1.0, self.accuracy
