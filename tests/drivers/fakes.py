"""Stand-in adapters for driver tests that need a bus which stops answering."""


class MutedAdapter:
    """Records every write; answers the first `answers` reads, then times out.

    Parameters
    ----------
    answers : list of str
        The replies given, in order, before every later read times out.
    """

    def __init__(self, answers=()):
        self.sent = []
        self._answers = list(answers)

    def write(self, message):
        self.sent.append(message)

    def read(self):
        if self._answers:
            return self._answers.pop(0)
        raise TimeoutError("no reply")
