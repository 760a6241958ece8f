"""Talking to a simulated TSP instrument directly, for its tests."""


def ask(instrument, message):
    """Send one message and collect every reply line it brought."""
    instrument.write(message)
    replies = []
    while (reply := instrument.read()) is not None:
        replies.append(reply)
    return replies
