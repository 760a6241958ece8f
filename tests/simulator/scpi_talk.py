"""Talking to a simulated SCPI instrument directly, for its tests."""


def ask(instrument, message):
    """Write a message and read one reply (None when there is none)."""
    instrument.write(message)
    return instrument.read()


def errors(instrument):
    """Every queued error entry, read until the entry of code 0."""
    entries = []
    while int((reply := ask(instrument, ":SYST:ERR?")).split(",", 1)[0]) != 0:
        entries.append(reply)
    return entries


def codes(instrument):
    """The codes of every queued error."""
    return [int(entry.split(",", 1)[0]) for entry in errors(instrument)]


def numbers(reply):
    return [float(field) for field in reply.split(",")]


def silent(instrument, message, code):
    """The message gets no reply and queues exactly `code`."""
    instrument.write(message)
    return instrument.read() is None and codes(instrument) == [code]
